"""The Shape-and-background page (Figs 16, 17) on tiny_test: the missing-dataset sentence, a run
as a background job into a figure with its Export, server paths only when the operator allows."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from apptest_helpers import ROOT, open_page
from test_background_challenge import make_release
from test_shape_texture import make_cue_conflict

from signseg_core.jobs import default_manager
from signseg_core.paths import cache_dir

pytestmark = pytest.mark.usefixtures("tiny_dashboard")
PAGE = ROOT / "pages" / "6_Shape_and_background.py"


def test_missing_dataset_is_one_sentence_and_nothing_runs():
    at = open_page(PAGE)
    assert len(at.warning) == 1
    text = at.warning[0].value
    assert text.startswith("cue-conflict images not found in ") and "cue-conflict.tar.gz" in text
    assert not at.button  # no Compute without data
    assert not [w for w in at.text_input if w.key == "bench_folder"]  # server paths are off


def test_backgrounds_missing_variant_names_it():
    at = open_page(PAGE)
    at.radio(key="bench_kind").set_value("backgrounds").run()
    assert "ImageNet-9 'original' images not found" in at.warning[0].value


def test_shape_texture_runs_as_a_job_and_draws_an_exportable_figure():
    make_cue_conflict(cache_dir() / "datasets" / "cue-conflict", per_category=1)
    at = open_page(PAGE)
    at.text_input(key="bench_alphas").set_value("0,1").run()
    assert "3 conditions" in at.button(key="bench_compute").label
    at.button(key="bench_compute").click().run()
    jobs = [j for j in default_manager().jobs(active_only=False) if j.label.startswith("tiny_test")]
    assert jobs and all(j.wait(60) for j in jobs) and jobs[0].state == "done", jobs[0].error
    at.run()
    assert not at.exception and not at.warning
    table = at.dataframe[0].value
    assert len(table) == 4 and set(table.sign) == {"positive", "negative"}
    assert any("Export" in e.label for e in at.expander)


def new_jobs(action) -> list:
    """The jobs ``action`` submitted (earlier tests' jobs stay in the shared manager)."""
    before = {j.id for j in default_manager().jobs(active_only=False)}
    action()
    return [j for j in default_manager().jobs(active_only=False) if j.id not in before]


def test_models_compared_share_one_figure_and_reuse_what_was_stored():
    make_cue_conflict(cache_dir() / "datasets" / "cue-conflict", per_category=1)
    at = open_page(PAGE)
    at.text_input(key="bench_alphas").set_value("0,1").run()
    alone = new_jobs(lambda: at.button(key="bench_compute").click().run())
    assert len(alone) == 1 and alone[0].wait(60) and alone[0].state == "done", alone[0].error
    assert alone[0].label.startswith("tiny_test:")
    at.run()
    first = at.dataframe[0].value
    options = at.multiselect(key="bench_compare").options
    assert "efficientnet_lite0" in options and "tiny_test" not in options
    at.multiselect(key="bench_compare").set_value(["efficientnet_lite0"]).run()
    assert "Evaluate tiny_test, efficientnet_lite0" in at.button(key="bench_compute").label
    both = new_jobs(lambda: at.button(key="bench_compute").click().run())
    assert len(both) == 1 and both[0].wait(120) and both[0].state == "done", both[0].error
    # one bar over both models: 16 images each
    assert both[0].done == both[0].total == 2 * 16
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table.model.unique()) == ["tiny_test", "efficientnet_lite0"]
    mine = table[table.model == "tiny_test"].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, first.reset_index(drop=True))
    names = {trace.get("name") for trace in
             json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert {"tiny_test · positive", "efficientnet_lite0 · negative"} <= names


def test_bad_strengths_are_one_sentence():
    make_cue_conflict(cache_dir() / "datasets" / "cue-conflict", per_category=1)
    at = open_page(PAGE)
    at.text_input(key="bench_alphas").set_value("1:0:0.1").run()
    assert at.error and "rise" in at.error[0].value


def test_server_folder_only_inside_the_data_roots(monkeypatch, tmp_path):
    make_release(tmp_path / "data", variants=("original", "mixed_same", "mixed_rand"),
                 masks=False)
    monkeypatch.setenv("SIGNSEG_ALLOW_SERVER_PATHS", "1")
    monkeypatch.setenv("SIGNSEG_DATA_ROOTS", str(tmp_path / "data"))
    at = open_page(PAGE)
    at.radio(key="bench_kind").set_value("backgrounds").run()
    at.text_input(key="bench_folder").set_value(str(tmp_path / "elsewhere")).run()
    assert at.error and "not inside the data folders" in at.error[0].value
    at.text_input(key="bench_folder").set_value("bg_challenge").run()  # relative to a root
    assert not at.warning and not at.error
    assert at.button(key="bench_compute")
