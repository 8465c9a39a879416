"""The command line and the home page, as a user meets them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from apptest_helpers import ROOT

from signseg_core.cli.main import main


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
