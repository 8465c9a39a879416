"""The ablation explorer page (pages/0), driven through AppTest on the tiny test network, and the
engine figure it draws.

Each unit's 21 conditions are visualized once per module and written into every test's own store.
The unit's metric plots use a fast metric setup (tiny_test as the whole similarity ensemble, no
LPIPS; the default detector, whose weights are missing under the test's TORCH_HOME).
"""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pytest
from apptest_helpers import ROOT, open_page
from packaged_marks import needs_centernet
from streamlit.testing.v1 import AppTest

from signseg_core.conditions import Condition, condition_grid
from signseg_core.figures.plots import activation_vs_alpha_figure
from signseg_core.jobs import default_manager
from signseg_core.models.registry import load_model
from signseg_core.optimize.results import ConditionResult, save_condition
from signseg_core.optimize.settings import ConditionKey
from signseg_core.optimize.visualize import visualize
from signseg_core.store import default_store
from signseg_core.sweeps.measure import Metrics
from signseg_core.sweeps.preview import default_settings
from signseg_core.sweeps.run import SweepSpec, run_sweep
from signseg_core.sweeps.tasks import metrics_job_key, stored_metric_rows

PAGE = str(ROOT / "pages" / "0_Ablation_explorer.py")
TINY = {"generator": "fourier", "restarts": 2, "generations": 2, "seed": 0}


#: The explorer's metric setup in these tests (the page's default loads three EfficientNets).
TEST_METRICS = SweepSpec(ensemble=("tiny_test", "tiny_test_b"), lpips=False)
DETECTOR_FILE = "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"
HELD_OUT = "similarity to the control images (held-out ensemble)"  # the figure's y title

pytestmark = pytest.mark.usefixtures("tiny_dashboard", "fast_metrics")


@pytest.fixture
def fast_metrics(monkeypatch):
    import signseg_ui.unit_metrics

    monkeypatch.setattr(signseg_ui.unit_metrics, "METRIC_SPEC", TEST_METRICS)


def run_page(**query) -> AppTest:
    return open_page(PAGE, **query)


def tiny_settings(at: AppTest) -> AppTest:
    at.radio(key="explorer_budget").set_value("custom").run()  # the settings' own widgets
    at.selectbox(key="explorer_generator").set_value(TINY["generator"]).run()
    at.number_input(key="explorer_restarts").set_value(TINY["restarts"])
    at.number_input(key="explorer_generations").set_value(TINY["generations"])
    return at.run()


def page_settings():
    """The settings the page builds once :func:`tiny_settings` has set its widgets."""
    return dataclasses.replace(default_settings("tiny_test"), **TINY)


_VISUALIZED: dict[int, list[ConditionResult]] = {}


def fill_store(unit: int = 373) -> dict:
    """Put the unit's conditions into the test's store exactly as the page asks for them
    (computed once per module)."""
    if unit not in _VISUALIZED:
        _VISUALIZED[unit] = visualize(load_model("tiny_test"), condition_grid([unit]),
                                      settings=page_settings(), store=False)
    for result in _VISUALIZED[unit]:
        save_condition(default_store(), result)
    return {r.condition.key: r for r in _VISUALIZED[unit]}


def sweep_unit(unit: int = 373):
    """What ``python -m signseg_core sweep`` stores for the unit at the page's settings and
    metric setup: its table."""
    spec = SweepSpec(models=("tiny_test",), units=(unit,), settings=page_settings(),
                     ensemble=TEST_METRICS.ensemble, lpips=TEST_METRICS.lpips,
                     detector=TEST_METRICS.detector)
    return run_sweep(spec).table


def charts(at: AppTest) -> dict[str, dict]:
    """The page's Plotly figures (as JSON) by y-axis title."""
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return {f["layout"]["yaxis"]["title"]["text"]: f for f in figs}


def keys_of_buttons(at: AppTest) -> list[str]:
    return [b.key for b in at.button]


def markdowns(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def best_text(result: ConditionResult) -> str:
    return f"**{result.best_scores[result.best_index]:.2f}**"


# -- engine figure -----------------------------------------------------------------------------

def _result(sign: str, alpha: float, best: list[float], intact: list[float]) -> ConditionResult:
    key = ConditionKey("m", "f", 7, sign, alpha, "fourier", "g", "{}", 1, len(best), 0, "fp32")
    n = len(best)
    return ConditionResult(key, np.zeros((n, 2, 2, 3), np.uint8), np.array(best),
                           np.array(intact), np.zeros((1, n)), np.zeros((1, n)),
                           np.zeros((n, 1), np.float32), np.zeros((n, 1), np.float32))


def test_activation_vs_alpha_figure_takes_the_best_restart_and_shares_the_control():
    results = [_result("negative", 1.0, [1.0, 4.0], [9.0, 8.0]),
               _result("control", 0.0, [5.0, 6.0], [6.0, 7.0]),
               _result("positive", 0.5, [3.0, 2.0], [4.0, 1.0]),
               _result("negative", 0.5, [np.nan, 2.5], [0.0, 3.5])]
    fig = activation_vs_alpha_figure(results, current=("negative", 0.5))
    traces = {t.name: t for t in fig.data}
    assert list(traces) == ["positive: ablated activation", "positive: intact logit",
                            "negative: ablated activation", "negative: intact logit", "shown"]
    assert list(traces["positive: ablated activation"].x) == [0.0, 0.5]
    assert list(traces["positive: ablated activation"].y) == [6.0, 3.0]
    assert list(traces["positive: intact logit"].y) == [7.0, 4.0]  # of the best image
    assert list(traces["negative: ablated activation"].x) == [0.0, 0.5, 1.0]
    assert list(traces["negative: ablated activation"].y) == [6.0, 2.5, 4.0]  # NaN restart skipped
    assert list(traces["negative: intact logit"].y) == [7.0, 3.5, 8.0]
    assert list(traces["shown"].x) == [0.5] and list(traces["shown"].y) == [2.5]
    assert [t.name for t in activation_vs_alpha_figure(results[2:3]).data] == [
        "positive: ablated activation", "positive: intact logit"]
    assert "shown" not in [t.name for t in activation_vs_alpha_figure(
        results, current=("positive", 0.9)).data]


# -- the page ----------------------------------------------------------------------------------

def test_first_visit_offers_to_compute_and_writes_the_url():
    at = run_page()
    assert at.selectbox(key="explorer_model").value == "tiny_test"
    assert at.selectbox(key="explorer_unit").value == 373
    assert at.radio(key="explorer_sign").value == "positive"
    assert at.select_slider(key="explorer_alpha").value == 0.5
    assert at.radio(key="explorer_budget").value == "preview"  # a CPU session
    label = at.button(key="explorer_compute").label
    # the expected time comes from this machine's measured images/s
    assert label.startswith("Compute unit 373 (21 conditions, about ") and \
        label.endswith(" on this CPU)")
    assert not at.get("image") and "not computed yet" in at.info[0].value
    assert dict(at.query_params) == {"model": "tiny_test", "unit": "373", "sign": "positive",
                                     "alpha": "0.5"}
    at.selectbox(key="explorer_unit").set_value(1).run()
    at.radio(key="explorer_sign").set_value("negative").run()
    assert at.query_params["unit"] == "1" and at.query_params["sign"] == "negative"
    assert at.button(key="explorer_compute").label.startswith("Compute unit 1 (21 conditions")


def test_stored_results_show_at_once_and_the_slider_moves_over_them():
    found = fill_store()
    n_jobs = len(default_manager().jobs(active_only=False))
    at = tiny_settings(run_page())
    assert keys_of_buttons(at) == ["explorer_metrics_compute"]  # images stored, metrics not
    images = at.get("image")
    assert len(images) == 1 + 2 + 2 * 11  # best, the restarts, the strip
    current = found[Condition(373, "positive", 0.5).key]
    best = current.best_index
    assert images[0].proto.imgs[0].caption == (
        f"positive weights, α = 0.5 · activation {current.best_scores[best]:.2f} · "
        f"intact {current.intact_scores[best]:.2f}")
    assert "**positive weights, α = 0.5: best of 2 restarts**" in markdowns(at)
    texts = markdowns(at)
    for i, score in enumerate(current.best_scores):  # a score above each restart
        assert any(t.startswith(f"**{score:.2f}**") for t in texts)
    strip = texts[texts.index("**Positive weights ablated**") + 1:]
    assert strip[0] == best_text(found[(373, "control", 0.0)])
    assert strip[5] == best_text(current) + " ◀"
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    lines = {t["name"]: t for t in fig["data"]}
    assert lines["negative: ablated activation"]["x"] == [round(0.1 * i, 6) for i in range(11)]
    assert lines["shown"]["x"] == [0.5]

    at.select_slider(key="explorer_alpha").set_value(1.0).run()
    assert not at.exception
    moved = found[Condition(373, "positive", 1.0).key]
    caption = at.get("image")[0].proto.imgs[0].caption
    assert caption.startswith(f"positive weights, α = 1.0 · "
                              f"activation {moved.best_scores[moved.best_index]:.2f}")
    assert "positive weights, α = 1.0" in at.subheader[0].value
    assert at.query_params["alpha"] == "1"
    assert len(default_manager().jobs(active_only=False)) == n_jobs  # no job for stored ones
    at.select_slider(key="explorer_alpha").set_value(0.0).run()
    assert at.get("image")[0].proto.imgs[0].caption.startswith("control (intact) · activation")


def test_the_compute_button_starts_one_job_whose_images_appear():
    at = tiny_settings(run_page())
    at.button(key="explorer_compute").click().run()
    assert not at.exception
    jobs = [j for j in default_manager().jobs(active_only=False) if "unit 373" in j.label]
    assert len(jobs) == 1 and jobs[0].wait(60), jobs
    assert jobs[0].state == "done", jobs[0].error
    at.run()
    assert not at.exception and "explorer_compute" not in keys_of_buttons(at)
    assert len(at.get("image")) == 25
    assert any(t.startswith("**Negative weights") for t in markdowns(at))


def test_a_running_job_is_shared_shows_progress_and_cancels():
    from signseg_core.sweeps.tasks import visualize_job_key
    from signseg_ui.explorer import submit_unit, unit_request

    settings = page_settings()
    release = threading.Event()

    def slow(progress, should_stop):
        progress(1, 4, "generation 1/4")
        while not should_stop() and not release.wait(0.02):
            pass
        return []

    at = tiny_settings(run_page())
    job = default_manager().submit(visualize_job_key(unit_request("tiny_test", 373, settings)),
                                   slow, label="slow")
    assert submit_unit(unit_request("tiny_test", 373, settings)) is job  # another session shares it
    at.run()
    assert not at.exception
    assert "explorer_compute" not in [b.key for b in at.button]
    bar = at.get("progress")[0]
    assert bar.value == 25 and "generation 1/4" in bar.text
    at.button(key="explorer_job_cancel").click().run()
    assert job.wait(10) and job.state == "cancelled"
    at.run()
    assert at.button(key="explorer_compute").label.startswith("Compute unit 373")


def test_the_url_restores_unit_sign_and_alpha():
    fill_store(unit=5)
    at = tiny_settings(run_page(unit="5", sign="negative", alpha="0.3"))
    assert at.selectbox(key="explorer_unit").value == 5
    assert at.radio(key="explorer_sign").value == "negative"
    assert at.select_slider(key="explorer_alpha").value == 0.3
    assert not at.error
    assert "5 electric ray — negative weights, α = 0.3" in at.subheader[0].value
    assert at.get("image")


@pytest.mark.parametrize("query, says", [
    ({"unit": "5000"}, "Cannot open ?unit=5000: unit 5000 is out of range"),
    ({"unit": "macaque"}, "Cannot open ?unit=macaque: unit must be an integer"),
    ({"sign": "both"}, "Cannot open ?sign=both: unknown sign 'both'"),
    ({"alpha": "0.25"}, "Cannot open ?alpha=0.25: alpha must be one of"),
])
def test_a_bad_url_value_is_an_error_message_not_a_crash(query, says):
    at = run_page(**query)
    assert any(says in e.value for e in at.error), [e.value for e in at.error]
    assert at.selectbox(key="explorer_unit").value == 373
    assert at.radio(key="explorer_sign").value == "positive"
    assert at.select_slider(key="explorer_alpha").value == 0.5


# -- the unit's metrics ------------------------------------------------------------------------

def test_metrics_a_sweep_stored_are_plotted_against_alpha_for_both_signs(monkeypatch, tmp_path):
    monkeypatch.setenv("SIGNSEG_PACKAGES_DIR", str(tmp_path / "none"))  # no CenterNet either
    fill_store()
    table = sweep_unit()
    at = tiny_settings(run_page(sign="negative", alpha="0.3"))
    assert "explorer_metrics_compute" not in keys_of_buttons(at)
    figs = charts(at)
    assert list(figs) == ["activation of the best image", HELD_OUT,
                          "spectral slope (log-log)", "power ratio control / ablated"]
    for title, metric in ((HELD_OUT, "similarity"),
                          ("spectral slope (log-log)", "spectral_slope")):
        lines = {t["name"]: t for t in figs[title]["data"]}
        for sign in ("positive", "negative"):
            part = table[table.sign.isin(("control", sign))].groupby("alpha")[metric].mean()
            line = lines[f"{sign}: mean over restarts"]
            assert line["x"] == [round(0.1 * i, 6) for i in range(11)]
            np.testing.assert_allclose(line["y"], part.to_numpy(), rtol=1e-12)
        shown = table[(table.sign == "negative") & np.isclose(table.alpha, 0.3)][metric].mean()
        assert lines["shown"]["x"] == [0.3]
        np.testing.assert_allclose(lines["shown"]["y"], [shown], rtol=1e-12)
    ratio = {t["name"] for t in figs["power ratio control / ablated"]["data"]}
    assert ratio == {"positive α=0.3", "negative α=0.3"}
    notes = [i.value for i in at.info]
    assert len(notes) == 1 and notes[0].startswith("Objectness unavailable")
    assert DETECTOR_FILE in notes[0] and "\n" not in notes[0]
    exports = [e.label.removeprefix("Export tiny_test_unit") for e in at.expander
               if e.label.startswith("Export")]
    assert exports == [f"373_{panel}" for panel in (
        "alpha_strip", "activation_vs_alpha", "similarity", "spectral_slope", "spectrum_ratio")]

    at.select_slider(key="explorer_alpha").set_value(0.0).run()
    assert not at.exception
    figs = charts(at)
    assert "power ratio control / ablated" not in figs
    shown = {t["name"]: t for t in figs[HELD_OUT]["data"]}["shown"]
    assert shown["x"] == [0.0]  # the control, on the negative line
    assert len(figs[HELD_OUT]["data"]) == 5


@needs_centernet
def test_objectness_is_plotted_when_the_packaged_detector_is_here():
    fill_store()
    table = sweep_unit()
    assert table.objectness.between(0, 1).all()
    at = tiny_settings(run_page(sign="negative", alpha="0.3"))
    figs = charts(at)
    assert list(figs) == ["activation of the best image", HELD_OUT,
                          "objectness (highest box score)", "spectral slope (log-log)",
                          "power ratio control / ablated"]
    assert not [i.value for i in at.info if i.value.startswith("Objectness unavailable")]
    lines = {t["name"]: t for t in figs["objectness (highest box score)"]["data"]}
    for sign in ("positive", "negative"):
        part = table[table.sign.isin(("control", sign))].groupby("alpha").objectness.mean()
        np.testing.assert_allclose(lines[f"{sign}: mean over restarts"]["y"], part.to_numpy(),
                                   rtol=1e-12)


def test_only_images_stored_offer_a_measure_button_whose_job_stores_the_rows():
    found = fill_store()
    at = tiny_settings(run_page())
    button = at.button(key="explorer_metrics_compute")
    assert button.label == "Measure unit 373: similarity, objectness, spectra"
    assert list(charts(at)) == ["activation of the best image"]
    button.click().run()
    assert not at.exception
    jobs = [j for j in default_manager().jobs(active_only=False) if "similarity" in j.label]
    assert len(jobs) == 1 and jobs[0].wait(60), jobs
    assert jobs[0].state == "done", jobs[0].error
    at.run()
    assert not at.exception and "explorer_metrics_compute" not in keys_of_buttons(at)
    assert HELD_OUT in charts(at)
    ordered = [found[c.key] for c in condition_grid([373])]
    metrics = Metrics.build(TEST_METRICS, "cpu", {})
    rows, _ = stored_metric_rows(ordered, metrics)  # stored where a sweep would look
    lines = {t["name"]: t for t in charts(at)[HELD_OUT]["data"]}
    np.testing.assert_allclose(
        lines["positive: mean over restarts"]["y"],
        rows[rows.sign.isin(("control", "positive"))].groupby("alpha").similarity.mean(),
        rtol=1e-12)


def test_a_running_metrics_job_shows_progress_and_cancels():
    found = fill_store()
    ordered = [found[c.key] for c in condition_grid([373])]
    key = metrics_job_key(ordered, Metrics.build(TEST_METRICS, "cpu", {}))

    def slow(progress, should_stop):
        progress(0, 1, "measuring 42 images")
        while not should_stop():
            threading.Event().wait(0.02)
        return None

    job = default_manager().submit(key, slow, label="slow metrics")
    at = tiny_settings(run_page())
    assert "explorer_metrics_compute" not in keys_of_buttons(at)
    assert "measuring 42 images" in at.get("progress")[0].text
    at.button(key="explorer_metrics_job_cancel").click().run()
    assert job.wait(10) and job.state == "cancelled"
    at.run()
    assert "explorer_metrics_compute" in keys_of_buttons(at)


def test_the_caption_of_one_restart_is_singular():
    def page():
        import numpy as np

        from signseg_core.optimize.results import ConditionResult
        from signseg_core.optimize.settings import ConditionKey
        from signseg_ui.unit_images import show_current

        key = ConditionKey("m", "f", 7, "negative", 0.4, "fourier", "g", "{}", 1, 1, 0, "fp32")
        one = np.zeros((1, 1))
        show_current(ConditionResult(key, np.zeros((1, 2, 2, 3), np.uint8), np.array([0.17]),
                                     np.array([0.114]), one, one, np.zeros((1, 1), np.float32),
                                     np.zeros((1, 1), np.float32)),
                     label="negative weights, α = 0.4")

    at = AppTest.from_function(page).run()
    assert not at.exception, at.exception
    assert "**negative weights, α = 0.4: best of 1 restart**" in markdowns(at)
    assert (at.get("image")[0].proto.imgs[0].caption
            == "negative weights, α = 0.4 · activation 0.17 · intact 0.11")
