"""``python -m signseg_core neurons ...``: every subcommand on small inputs, as a user meets it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from apptest_helpers import ROOT
from PIL import Image

from signseg_core.cli.main import main
from signseg_core.models.zoo import load_image
from signseg_core.neurons.data import load_neuron_data
from signseg_core.neurons.demo import write_demo_dataset
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
    for name in ("fit", "ablate", "dale-features", "diverse-set", "localize", "demo"):
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
    assert "4 neuron models on tiny_test features (30 images, 16 features)" in out
    assert "best per session:" in out and f"{study.table.r2_test[0]:.3f}" in out
    assert "over 2 sessions" in out


def test_ablate_prints_predicted_responses_then_reads_them_back(capsys, demo, tmp_path):
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
    code, out, _ = _run(capsys, *argv)
    assert code == 0 and "3 conditions (3 from the store)" in out


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
