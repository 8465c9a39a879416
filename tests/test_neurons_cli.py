"""``python -m signseg_core neurons ...``: every subcommand on small inputs, as a user meets it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from apptest_helpers import ROOT
from PIL import Image

from signseg_core.cli.main import main
from signseg_core.models.zoo import load_image
from signseg_core.neurons.data import load_neuron_data
from signseg_core.neurons.demo import write_demo_dataset
from signseg_core.neurons.extrapolation import (
    model_extrapolation_test,
    natural_predictions,
    permutation_t_test,
)
from signseg_core.neurons.study import fit_study, localize_and_clear, neuron_readout_model
from signseg_core.stimuli.diverse import read_selection

TINY = ["--model", "tiny_test", "--quiet"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """4 neurons in 2 sessions, 30 images of 64 px, on tiny_test features."""
    return write_demo_dataset(tmp_path_factory.mktemp("demo"), n_images=30, n_neurons=4,
                              n_sessions=2, image_size=64, model_name="tiny_test", store=False)


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_parsing_neurons_commands_imports_no_heavy_module():
    code = ("import sys; from signseg_core.cli.main import build_parser; "
            "a = build_parser().parse_args(['neurons', 'fit', 'x.csv']); "
            "heavy = [m for m in ('sklearn', 'signseg_core.neurons.study', "
            "'signseg_core.neurons.fitting', 'signseg_core.neurons.demo') "
            "if m in sys.modules]; "
            "print(a.func.__name__, a.model, heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "cmd_fit efficientnet_lite0 []"


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["neurons", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("fit", "ablate", "population", "dale-features", "diverse-set", "localize",
                 "demo"):
        assert name in out


def test_fit_prints_the_tables_and_writes_them(capsys, demo, tiny, tmp_path):
    code, out, _ = _run(capsys, "neurons", "fit", demo, *TINY, "--out", tmp_path / "o")
    assert code == 0
    study = fit_study(tiny, load_neuron_data(demo), store=False)
    written = pd.read_csv(tmp_path / "o" / "neuron_fits.csv", keep_default_na=False)
    assert list(written["neuron"]) == ["n00", "n01", "n02", "n03"]
    np.testing.assert_allclose(written["r2_test"], study.table["r2_test"])
    best = pd.read_csv(tmp_path / "o" / "best_per_session.csv")
    assert list(best["neuron"]) == list(study.best["neuron"]) and len(best) == 2
    np.testing.assert_allclose(written["r2_test_pearson"], study.table["r2_test_pearson"])
    assert ("4 neuron models on tiny_test features (30 images, 16 features; every varying "
            "feature kept, as the paper)") in out
    header = out.splitlines()[1].split()
    assert header[4:8] == ["r2_train", "r2_test", "r2_train_pearson", "r2_test_pearson"]
    first = out.splitlines()[2].split()  # n00 and its metadata, then the four r²
    row = study.table.iloc[0]
    assert first[4:8] == [f"{row[c]:.3f}" for c in header[4:8]]
    assert "best per session (by test r², the coefficient of determination):" in out
    assert "r2_train, r2_test: coefficient of determination" in out
    assert "r2_*_pearson: squared Pearson correlation" in out
    s = study.summary()
    assert (f"over 2 sessions, mean ± SD: test r² {s['best_r2_test_mean']:.3f} ± "
            f"{s['best_r2_test_sd']:.3f} (determination), {s['best_r2_test_pearson_mean']:.3f}"
            f" ± {s['best_r2_test_pearson_sd']:.3f} (squared Pearson)") in out


def test_min_sd_ratio_reaches_the_fit_and_is_validated(capsys, demo, tiny, tmp_path):
    code, out, _ = _run(capsys, "neurons", "fit", demo, *TINY, "--min-sd-ratio", "0.3",
                        "--out", tmp_path)
    assert code == 0 and "features below 0.3 x the median SD left out" in out
    dataset = load_neuron_data(demo)
    want = fit_study(tiny, dataset, store=False, min_sd_ratio=0.3).table
    paper = fit_study(tiny, dataset, store=False).table
    written = pd.read_csv(tmp_path / "neuron_fits.csv", keep_default_na=False)
    np.testing.assert_allclose(written["r2_test"], want["r2_test"])
    np.testing.assert_array_equal(written["n_positive"] + written["n_negative"],
                                  want["n_positive"] + want["n_negative"])
    # tiny_test has features far below 0.3 x the median SD: the filter drops some of them
    assert ((want["n_positive"] + want["n_negative"]) < (paper["n_positive"]
                                                          + paper["n_negative"])).any()
    code, _, err = _run(capsys, "neurons", "fit", demo, *TINY, "--min-sd-ratio", "1.5")
    assert code == 2 and "min_sd_ratio must be a number in [0, 1)" in err


def test_ablate_prints_predicted_responses_then_reads_them_back(capsys, demo, tiny, tmp_path):
    argv = ["neurons", "ablate", demo, *TINY, "--neuron", "n01", "--alphas", "0,1",
            "--generations", "2", "--restarts", "2", "--generator-option", "size=32"]
    code, out, _ = _run(capsys, *argv, "--out", tmp_path)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("neuron n01 (tiny_test+neuron:n01)")
    assert [line.split()[0] for line in lines[2:5]] == ["control", "pos", "neg"]
    assert "3 conditions (0 from the store) x 2 restarts" in out
    table = pd.read_csv(tmp_path / "ablation_n01.csv")
    assert list(table["condition"]) == ["control", "pos 1", "neg 1"]
    assert table["ablated_response"][0] == pytest.approx(table["predicted_response"][0], rel=1e-4)
    with Image.open(tmp_path / "ablation_n01.png") as im:
        assert im.size == (3 * 96 + 4 * 2, 96 + 12 + 2 * 2)  # contact sheet of 3 labelled tiles
    conditions = pd.read_csv(tmp_path / "ablation_n01_conditions.csv")
    assert list(conditions.columns) == ["image", "sign", "alpha", "model", "restart",
                                        "predicted_response"]
    assert list(conditions["sign"]) == ["control"] * 2 + ["positive"] * 2 + ["negative"] * 2
    assert list(conditions["image"][:3]) == ["ablation_n01_images/control_r0.png",
                                             "ablation_n01_images/control_r1.png",
                                             "ablation_n01_images/pos_1_r0.png"]
    assert all((tmp_path / name).is_file() for name in conditions["image"])
    code, out, _ = _run(capsys, *argv, "--population")
    assert code == 0 and "3 conditions (3 from the store)" in out
    # the stored control's images: their predicted responses against the natural images'
    study = fit_study(tiny, load_neuron_data(demo), store=False)
    control = conditions[conditions["sign"] == "control"]["predicted_response"]
    test = permutation_t_test(control.to_numpy(), natural_predictions(study, "n01"))
    assert f"its 2 preferred images vs its 30 natural images: {test.summary()}" in out
    assert "Fig. 7 right, in silico: the 4 neuron models' response" in out


def test_dale_features_prints_consistent_features_or_the_best_candidates(capsys, demo, tmp_path):
    csv = tmp_path / "dale.csv"
    code, out, _ = _run(capsys, "neurons", "dale-features", demo, *TINY, "--csv", csv)
    assert code == 0
    table = pd.read_csv(csv)
    assert len(table) == 16 and {"label", "agreement", "p_bonferroni"} <= set(table.columns)
    n = int((table["label"] != "mixed").sum())
    assert out.startswith(f"{n} of 16 features consistent across 4 neuron models")
    # 4 models: p >= 2 * 0.5**4 * 16 = 2 > alpha, so none can be significant
    assert n == 0 and "smallest possible Bonferroni p is 1" in out
    code, out, _ = _run(capsys, "neurons", "dale-features", demo, *TINY, "--best-only")
    assert code == 0 and "across 2 neuron models" in out


def test_diverse_set_prints_and_writes_the_selection(capsys, demo, tmp_path):
    folder = demo.parent / "images"
    code, out, _ = _run(capsys, "neurons", "diverse-set", folder, "-k", 5, *TINY,
                        "--out", tmp_path / "sel.csv", "--sheet", tmp_path / "sheet.png",
                        "--columns", 5, "--n-components", 10)
    assert code == 0
    chosen = [Path(line.split("\t")[1]) for line in out.splitlines()[:5]]
    assert len(set(chosen)) == 5 and all(p.parent == folder for p in chosen)
    assert read_selection(tmp_path / "sel.csv") == chosen
    assert "5 of 30 images; 10 PCA components" in out
    with Image.open(tmp_path / "sheet.png") as im:
        assert im.size == (5 * 96 + 6 * 2, 96 + 12 + 2 * 2)
    code, _, err = _run(capsys, "neurons", "diverse-set", tmp_path / "nope", "-k", 2, *TINY)
    assert code == 2 and "does not exist" in err


def test_localize_a_unit_and_a_neuron_model(capsys, demo, tiny, tmp_path):
    image = demo.parent / "images" / "img_003.png"
    opts = ["--diameter", 16, "--sigma", 8, "--n-disks", 12]
    out_png = tmp_path / "unit.png"
    code, out, _ = _run(capsys, "neurons", "localize", image, "--unit", 5, *TINY, *opts,
                        "--fill", "white", "--out", out_png)
    assert code == 0
    loc, clearing = localize_and_clear(lambda x: tiny(x)[:, 5], load_image(image), fill="white",
                                       diameter=16, sigma=8, n_disks=12)
    assert f"relative change {clearing.relative_change:+.1%}" in out
    assert f"{loc.area_fraction:.1%} of the image" in out
    with Image.open(out_png) as im:
        assert im.size == (64, 64)

    code, out, _ = _run(capsys, "neurons", "localize", image, "--data", demo, "--neuron", "n02",
                        *TINY, *opts, "--out", tmp_path / "neuron.png")
    assert code == 0 and out.startswith("neuron n02 of tiny_test")
    study = fit_study(tiny, load_neuron_data(demo), store=False)
    model = neuron_readout_model(tiny, study, ["n02"])
    _, clearing = localize_and_clear(lambda x: model(x)[:, 0], load_image(image), diameter=16,
                                     sigma=8, n_disks=12)
    assert f"response intact {clearing.intact:.4f}" in out
    assert (tmp_path / "neuron.png").is_file()
    test = model_extrapolation_test(study, "n02", [clearing.intact])
    assert ("Fig. 21 left, in silico: predicted response to this image vs to the 30 natural "
            f"images: {test.summary()}") in out

    code, _, err = _run(capsys, "neurons", "localize", image, "--data", demo, *TINY)
    assert code == 2 and "--data needs --neuron" in err


def test_demo_writes_a_loadable_data_set(capsys, tmp_path):
    code, out, _ = _run(capsys, "neurons", "demo", tmp_path / "d", "--n-images", 12,
                        "--n-neurons", 3, "--n-sessions", 1, "--image-size", 32, *TINY)
    assert code == 0
    dataset = load_neuron_data(tmp_path / "d" / "responses.csv")
    assert dataset.n_images == 12 and dataset.neurons == ("n00", "n01", "n02")
    assert (tmp_path / "d" / "planted_weights.npz").is_file()
    assert f"wrote 12 images, 3 neurons: {tmp_path / 'd' / 'responses.csv'}" in out


def test_bad_data_exits_2_naming_the_row(capsys, demo, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("image,neuron,response\nimages/img_000.png,a,1.5\n"
                   "images/img_001.png,a,lots\n")
    code, out, err = _run(capsys, "neurons", "fit", bad, "--images", demo.parent, *TINY,
                          "--min-images", 1)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "line 3: response 'lots' is not a number" in err
    code, _, err = _run(capsys, "neurons", "ablate", demo, *TINY, "--neuron", "zz")
    assert code == 2 and "unknown neuron 'zz'" in err


def test_localize_defaults_to_the_papers_geometry_and_says_when_nothing_is_localized(
        capsys, demo, tiny, monkeypatch, tmp_path):
    """64-px images get 12-px disks and sigma 7.5 (50 and 30 per 256 px); a response no
    perturbation lowers gives an empty mask, and then nothing is cleared."""
    import signseg_core.neurons.study as neurons_mod

    monkeypatch.chdir(tmp_path)  # the overlay's default place: <image>_overlay.png, here

    image = demo.parent / "images" / "img_003.png"
    code, out, _ = _run(capsys, "neurons", "localize", image, "--unit", 5, *TINY,
                        "--n-disks", 6)
    assert code == 0 and "6 disks of 12 px, sigma 7.5 px" in out

    flat = neurons_mod.localize_and_clear(lambda x: x.new_ones(len(x)), load_image(image),
                                          diameter=12, sigma=7.5, n_disks=6)
    assert not flat[0].mask.any() and flat[1] is None
    import signseg_core.cli.neuron_commands as commands
    monkeypatch.setattr(commands, "localize_and_clear", lambda *a, **k: flat)
    code, out, _ = _run(capsys, "neurons", "localize", image, "--unit", 5, *TINY)
    assert code == 0 and "no region" in out and "relative change" not in out
    assert (tmp_path / "img_003_overlay.png").is_file()


def _record(tiny, planted, folder: Path, names) -> pd.DataFrame:
    """A simulated recording: the demo's planted (noise-free) neurons on the images."""
    rows = []
    for name in names:
        with torch.no_grad():
            f = tiny.features(load_image(folder / name)[None]).double().numpy()[0]
        for j, neuron in enumerate(planted["neurons"]):
            rows.append((name, str(neuron), float(f @ planted["weights"][j] + planted["bias"][j])))
    return pd.DataFrame(rows, columns=["image", "neuron", "response"])


def test_population_from_a_recording_of_the_ablation_images(capsys, demo, tiny, tmp_path):
    argv = ["neurons", "ablate", demo, *TINY, "--neuron", "n01", "--alphas", "0,1",
            "--generations", "2", "--restarts", "2", "--generator-option", "size=32"]
    assert _run(capsys, *argv, "--out", tmp_path)[0] == 0
    conditions = tmp_path / "ablation_n01_conditions.csv"
    names = list(pd.read_csv(conditions)["image"])
    planted = np.load(demo.parent / "planted_weights.npz")
    recorded = _record(tiny, planted, tmp_path, names)
    recorded.to_csv(tmp_path / "recorded.csv", index=False)
    code, out, _ = _run(capsys, "neurons", "population", tmp_path / "recorded.csv",
                        "--conditions", conditions, "--reference", demo, "--csv",
                        tmp_path / "pop.csv", "--html", tmp_path / "pop.html",
                        "--permutations", 500)
    assert code == 0, out
    assert out.startswith("4 neurons, 6 images; each neuron z-scored over its responses to the "
                          "natural images of the reference")
    # reference: z-score by hand with numpy, population mean per image, then per condition
    natural = load_neuron_data(demo)
    wide = recorded.pivot(index="image", columns="neuron", values="response").loc[names]
    ref = natural.responses[:, [natural.neurons.index(n) for n in wide.columns]]
    z = (wide.to_numpy() - ref.mean(0)) / ref.std(0, ddof=1)
    per_image = z.mean(axis=1)
    table = pd.read_csv(tmp_path / "pop.csv")
    assert list(table["condition"]) == ["control", "pos 1", "neg 1"]
    np.testing.assert_allclose(table["population_z"],
                               [per_image[0:2].mean(), per_image[2:4].mean(),
                                per_image[4:6].mean()], rtol=1e-6)
    assert set(table["model"]) == {"n01"}
    j = natural.neurons.index("n01")
    test = permutation_t_test(wide["n01"].to_numpy()[:2], natural.responses[:, j],
                              n_permutations=500)
    assert f"{test.p:.3g}" in out.split("Fig. 21 left")[1]
    assert (tmp_path / "pop.html").read_text().count("population response (z)") >= 1
    code, out, _ = _run(capsys, "neurons", "population", tmp_path / "recorded.csv",
                        "--conditions", conditions)
    assert code == 0 and "z-scored over its responses to all 6 images of the file" in out
    assert "Fig. 21" not in out  # needs the natural images
    bad = tmp_path / "bad_conditions.csv"
    bad.write_text("image,sign,alpha\n" + names[0] + ",control,0\n")
    code, _, err = _run(capsys, "neurons", "population", tmp_path / "recorded.csv",
                        "--conditions", bad)
    assert code == 2 and "5 image(s) of the responses have no condition" in err
