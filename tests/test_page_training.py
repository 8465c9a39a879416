"""The Training runs page (issue 16, part 4) through Streamlit's AppTest, on runs folders made
here (no training), and the figure it draws."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from apptest_helpers import ROOT, open_page

from signseg_core.figures.export import figure_data_csv
from signseg_core.figures.training_plots import (
    ACTIVATION_COLORS,
    final_epoch_table,
    training_curves_figure,
)
from signseg_core.training.records import EPOCHS_CSV, write_run

PAGE = str(ROOT / "pages" / "8_Training_runs.py")


def records(top1: list[float], *, val: bool = True) -> pd.DataFrame:
    n = len(top1)
    table = pd.DataFrame({"epoch": range(1, n + 1), "train_loss": [3.0 - i for i in range(n)],
                          "train_top1": top1, "train_top5": [min(1.0, 2 * t) for t in top1],
                          "images_per_s": [100.0] * n, "lr": [0.1] * n, "seconds": [5.0] * n,
                          "steps": [10] * n})
    for k in ("loss", "top1", "top5"):
        table[f"val_{k}"] = table[f"train_{k}"] if val else float("nan")
    return table


def make_run(folder, activation: str, table: pd.DataFrame) -> None:
    write_run(folder, {"arch": "resnet18", "activation": activation, "num_classes": 1000,
                       "classes": ["a", "b"], "recipe": {}})
    table.to_csv(folder / EPOCHS_CSV, index=False)


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGNSEG_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "cache" / "training"
    make_run(root / "resnet18_relu", "relu", records([0.2, 0.4, 0.5]))
    make_run(root / "resnet18_tanh", "tanh", records([0.1, 0.3], val=False))
    write_run(root / "started", {"arch": "resnet18", "activation": "relu"})  # no epoch yet
    return root


def test_the_page_draws_relu_against_tanh_and_shows_the_command(runs_root):
    at = open_page(PAGE)
    assert at.multiselect(key="training_runs").value == [
        "resnet18 relu (resnet18_relu)", "resnet18 tanh (resnet18_tanh)"]
    (chart,) = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    names = {t["name"] for t in spec["data"]}
    assert {"resnet18 relu (resnet18_relu) train", "resnet18 relu (resnet18_relu) val",
            "resnet18 tanh (resnet18_tanh) train"} == names  # tanh has no validation records
    assert "2 run(s) with records in training" in at.caption[0].value
    assert any("train resnet18 --activation tanh" in c.value for c in at.code)
    assert at.dataframe[0].value["epoch"].tolist() == [3, 2]


def test_choosing_one_run_draws_only_it(runs_root):
    at = open_page(PAGE)
    at.multiselect(key="training_runs").set_value(["resnet18 tanh (resnet18_tanh)"]).run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["name"] for t in spec["data"]} == {"resnet18 tanh (resnet18_tanh) train"}


def test_an_empty_folder_says_how_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGNSEG_CACHE_DIR", str(tmp_path / "cache"))
    at = open_page(PAGE)
    assert not at.get("plotly_chart")
    assert "No training runs here yet" in at.info[0].value
    assert any("python -m signseg_core train resnet18" in c.value for c in at.code)


def test_a_visitor_names_a_folder_only_where_the_operator_allows(runs_root, tmp_path,
                                                                monkeypatch):
    at = open_page(PAGE)
    assert not at.text_input  # server paths off: the operator's folder only
    other = tmp_path / "data" / "runs"
    make_run(other / "mine", "tanh", records([0.3]))
    monkeypatch.setenv("SIGNSEG_ALLOW_SERVER_PATHS", "1")
    monkeypatch.setenv("SIGNSEG_DATA_ROOTS", str(tmp_path / "data"))
    at = open_page(PAGE)
    at.text_input(key="training_root").input("runs").run()
    assert at.multiselect(key="training_runs").value == ["resnet18 tanh (mine)"]
    at.text_input(key="training_root").input(str(tmp_path / "cache")).run()
    assert "not inside the data folders" in at.error[0].value


def test_the_figure_has_three_panels_coloured_by_activation_and_exports_its_data():
    runs = {"relu run": records([0.2, 0.4]), "tanh run": records([0.1, 0.2], val=False)}
    fig = training_curves_figure(runs)
    assert [a.text for a in fig.layout.annotations] == ["Loss", "Top-1", "Top-5"]
    assert len(fig.data) == 3 * 2 + 3 * 1
    relu = [t for t in fig.data if t.name.startswith("relu")]
    assert {t.line.color for t in relu} == {ACTIVATION_COLORS["relu"]}
    top1 = [t for t in fig.data if t.xaxis == "x2" and t.name == "relu run train"][0]
    assert list(top1.y) == [20.0, 40.0]  # percent
    csv = figure_data_csv(fig).decode()
    assert csv.splitlines()[0].startswith("trace,name,role,x,y") and "tanh run train" in csv
    table = final_epoch_table(runs)
    assert table["train top-1 (%)"].tolist() == [40.0, 20.0]
    assert table["val top-1 (%)"].isna().tolist() == [False, True]
