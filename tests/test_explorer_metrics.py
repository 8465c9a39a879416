"""The engine side of the explorer's metric plots: one unit's metric figure, reading back the rows a
sweep stored per unit, and the background job that measures a unit and stores them.

One unit (373) of the 32-px ``tiny_test`` network is visualized once per module (2 restarts x 1
generation); each test writes it into its own store. The metric setup is a fast one: tiny_test as
the whole similarity ensemble, no LPIPS, no detector.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from signseg_core.conditions import condition_grid
from signseg_core.figures.plots import unit_metric_vs_alpha_figure
from signseg_core.jobs import JobManager
from signseg_core.optimize.results import save_condition
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.visualize import visualize
from signseg_core.store import ResultStore
from signseg_core.sweeps.measure import METRIC_COLUMNS, Metrics, unit_rows
from signseg_core.sweeps.run import SweepSpec, run_sweep
from signseg_core.sweeps.tasks import metrics_job, metrics_job_key, stored_metric_rows

UNIT = 373
SETTINGS = VisualizeSettings(generator="fourier", restarts=2, generations=1, seed=0)
SPEC = SweepSpec(models=("tiny_test",), units=(UNIT,), settings=SETTINGS,
                 ensemble=("tiny_test", "tiny_test_b"), lpips=False, detector=None)


@pytest.fixture(scope="module")
def unit_results(tiny):
    """Unit 373's 21 conditions in the sweep's order (computed once, stored nowhere)."""
    return visualize(tiny, condition_grid([UNIT]), settings=SETTINGS, store=False)


@pytest.fixture(scope="module")
def metrics():
    return Metrics.build(SPEC, "cpu", {})


@pytest.fixture
def filled(store, unit_results):
    """The test's store holding the unit's images (as ``visualize`` stores them)."""
    for result in unit_results:
        save_condition(store, result)
    return store


# -- the figure --------------------------------------------------------------------------------

def _rows(values: list[tuple[str, float, float]], *, unit: int = 7) -> pd.DataFrame:
    return pd.DataFrame([{"model": "m", "unit": unit, "sign": s, "alpha": a, "restart": i % 2,
                          "similarity": v} for i, (s, a, v) in enumerate(values)])


HAND = _rows([("control", 0.0, 1.0), ("control", 0.0, 3.0),
              ("positive", 0.5, 4.0), ("positive", 0.5, np.nan),
              ("negative", 1.0, 0.0), ("negative", 1.0, 1.0),
              ("negative", 0.5, 6.0), ("negative", 0.5, 5.0), ("negative", 0.5, 10.0)])


def test_the_figure_plots_each_restart_and_their_mean_with_the_control_on_both_lines():
    fig = unit_metric_vs_alpha_figure(HAND, "similarity", current=("negative", 0.5))
    traces = {t.name: t for t in fig.data}
    assert list(traces) == ["positive: mean over restarts", "positive: restarts",
                            "negative: mean over restarts", "negative: restarts", "shown"]
    assert list(traces["positive: mean over restarts"].x) == [0.0, 0.5]
    assert list(traces["positive: mean over restarts"].y) == [2.0, 4.0]  # the NaN is skipped
    assert sorted(traces["positive: restarts"].y) == [1.0, 3.0, 4.0]
    assert list(traces["negative: mean over restarts"].x) == [0.0, 0.5, 1.0]
    assert list(traces["negative: mean over restarts"].y) == [2.0, 7.0, 0.5]  # mean, not median
    assert sorted(zip(traces["negative: restarts"].x, traces["negative: restarts"].y)) == [
        (0.0, 1.0), (0.0, 3.0), (0.5, 5.0), (0.5, 6.0), (0.5, 10.0), (1.0, 0.0), (1.0, 1.0)]
    assert list(traces["shown"].x) == [0.5] and list(traces["shown"].y) == [7.0]
    assert fig.layout.yaxis.title.text == "similarity"


def test_the_figure_rings_the_control_on_the_current_sign_and_drops_all_nan_metrics():
    fig = unit_metric_vs_alpha_figure(HAND, "similarity", current=("positive", 0.0))
    shown = [t for t in fig.data if t.name == "shown"]
    assert len(shown) == 1 and list(shown[0].x) == [0.0] and list(shown[0].y) == [2.0]
    assert "shown" not in [t.name for t in unit_metric_vs_alpha_figure(
        HAND, "similarity", current=("positive", 1.0)).data]  # positive 1.0 not measured
    blank = HAND.assign(similarity=np.nan)
    assert not unit_metric_vs_alpha_figure(blank, "similarity", current=("positive", 0.0)).data
    only_negative = HAND[HAND.sign == "negative"]
    assert [t.name for t in unit_metric_vs_alpha_figure(only_negative, "similarity").data] == [
        "negative: mean over restarts", "negative: restarts"]


def test_the_figure_refuses_an_unknown_metric_and_several_units():
    with pytest.raises(ValueError, match="unknown metric 'objectness'; choose from"):
        unit_metric_vs_alpha_figure(HAND, "objectness")
    with pytest.raises(ValueError, match=r"rows must hold one unit; got \[7, 8\]"):
        unit_metric_vs_alpha_figure(pd.concat([HAND, _rows([("control", 0.0, 1.0)], unit=8)]),
                                    "similarity")


# -- rows a sweep stored, read back ------------------------------------------------------------

def test_rows_run_sweep_stored_are_read_back_and_plotted_as_the_table_says(
        filled, unit_results, metrics):
    assert stored_metric_rows(unit_results, metrics, store=filled) is None
    swept = run_sweep(SPEC, store=filled)  # reads the images back, measures, stores the rows
    got = stored_metric_rows(unit_results, metrics, store=filled)
    assert got is not None
    rows, spectra = got
    assert len(rows) == 21 * SETTINGS.restarts
    pd.testing.assert_frame_equal(rows, swept.table, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(spectra, swept.spectra, check_exact=False, rtol=1e-12)
    assert rows.objectness.isna().all() and rows.similarity.notna().all()
    # another order of the same conditions is another key: nothing stored under it
    assert stored_metric_rows(unit_results[::-1], metrics, store=filled) is None

    for metric in ("similarity", "spectral_slope"):
        traces = {t.name: t for t in unit_metric_vs_alpha_figure(rows, metric).data}
        for sign in ("positive", "negative"):
            part = rows[rows.sign.isin(("control", sign))]
            expected = part.groupby("alpha")[metric].mean()
            line = traces[f"{sign}: mean over restarts"]
            assert list(line.x) == list(expected.index) == [round(0.1 * i, 6) for i in range(11)]
            np.testing.assert_allclose(line.y, expected.to_numpy(), rtol=0, atol=0)
            dots = traces[f"{sign}: restarts"]
            assert sorted(dots.y) == sorted(part[metric])


def test_an_unreadable_entry_reads_as_missing(filled, unit_results, metrics):
    filled.put(metrics.key(unit_results), {}, meta={"rows": "not json"})
    assert stored_metric_rows(unit_results, metrics, store=filled) is None


# -- the job -----------------------------------------------------------------------------------

def test_the_job_measures_stores_and_is_shared(filled, unit_results, metrics, tiny, tmp_path):
    manager = JobManager()
    try:
        job = metrics_job(manager, tiny, unit_results, metrics, store=filled)
        assert metrics_job(manager, tiny, unit_results, metrics, store=filled) is job
        assert "unit 373" in job.label and f"{21 * SETTINGS.restarts} images" in job.label
        rows, spectra = job.result(timeout=60)
        assert job.progress == 1.0 and job.message == "measured"
        stored = stored_metric_rows(unit_results, metrics, store=filled)
        pd.testing.assert_frame_equal(rows, stored[0])  # exactly what a later visit reads
        pd.testing.assert_frame_equal(spectra, stored[1])
        direct, _ = unit_rows(unit_results, metrics, tiny.class_names)
        np.testing.assert_allclose(rows[list(METRIC_COLUMNS)].to_numpy(dtype=float),
                                   direct[list(METRIC_COLUMNS)].to_numpy(dtype=float),
                                   rtol=1e-12)
        other = ResultStore(tmp_path / "other")
        assert (metrics_job_key(unit_results, metrics, store=other)
                != metrics_job_key(unit_results, metrics, store=filled))
    finally:
        manager.shutdown(wait=True, timeout=10)


def test_a_job_cancelled_while_queued_stores_nothing(filled, unit_results, metrics, tiny):
    manager = JobManager(max_workers=1)
    release = threading.Event()
    try:
        blocker = manager.submit("blocker", lambda p, s: release.wait(10), label="blocker")
        job = metrics_job(manager, tiny, unit_results, metrics, store=filled)
        assert job.state == "queued"
        job.cancel()
        release.set()
        assert blocker.wait(10) and job.wait(10) and job.state == "cancelled"
        assert stored_metric_rows(unit_results, metrics, store=filled) is None
    finally:
        release.set()
        manager.shutdown(wait=True, timeout=10)


@pytest.mark.parametrize("pick, says", [
    (lambda rs: [], "results is empty"),
    (lambda rs: rs[1:], "exactly one control (alpha = 0) condition per generator; got 0"),
    (lambda rs: [rs[0], *rs], "exactly one control (alpha = 0) condition per generator; got 2"),
])
def test_the_job_refuses_results_that_are_not_one_unit(unit_results, metrics, tiny, pick, says):
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        metrics_job(JobManager(), tiny, pick(unit_results), metrics)


def test_the_job_refuses_two_units(unit_results, metrics, tiny):
    import dataclasses

    moved = dataclasses.replace(unit_results[1], key=dataclasses.replace(unit_results[1].key,
                                                                         unit=5))
    with pytest.raises(ValueError, match=r"one model's one unit; got \(model, unit\)"):
        metrics_job(JobManager(), tiny, [unit_results[0], moved], metrics)
