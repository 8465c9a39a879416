"""A unit's sweep metrics in the ablation explorer: similarity to the control images, objectness,
spectral slope and mean spectra against α.

Once all of a unit's conditions are there, its metrics are read from the entry
:func:`~signseg_core.sweeps.run.run_sweep` stores per unit, under the same metric setup as a
default sweep (:data:`METRIC_SPEC`); when it is missing, one background
:func:`~signseg_core.sweeps.tasks.metrics_job` measures the unit and stores it.

Streamlit glue only; the computations live in ``signseg_core``.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from signseg_core.figures.plots import spectrum_ratio_figure, unit_metric_vs_alpha_figure
from signseg_core.jobs import Job, default_manager
from signseg_core.optimize.request import unit_conditions
from signseg_core.optimize.results import ConditionResult
from signseg_core.store import default_store, key_digest
from signseg_core.sweeps.measure import SLOPE_RANGE, Metrics
from signseg_core.sweeps.run import SweepSpec
from signseg_core.sweeps.tasks import metrics_job, metrics_job_key, stored_metric_rows

from .cached_models import cached_metrics, cached_model
from .error_display import show_error
from .export_widgets import export_panel
from .jobs_widget import job_panel

#: The metric setup of the unit's metric plots: a default sweep's (similarity ensemble, LPIPS,
#: detector), so the rows ``python -m signseg_core sweep`` stores for a unit are found here.
METRIC_SPEC = SweepSpec()


class _NoRows(Exception):
    """Raised inside the cached read so that a missing entry is never cached."""


def unit_metrics_setup(model_name: str) -> Metrics:
    """:func:`~signseg_ui.cached_models.cached_metrics` of :data:`METRIC_SPEC` on
    ``model_name``'s device."""
    spec = METRIC_SPEC
    return cached_metrics(str(cached_model(model_name).device), tuple(spec.ensemble),
                          spec.lpips, spec.detector)


def sweep_ordered(found: dict[tuple, ConditionResult], unit: int) -> list[ConditionResult] | None:
    """``unit``'s 21 results in the order a sweep measures them (its request's), or None while
    any is missing."""
    keys = [c.key for c in unit_conditions(unit)]
    return [found[k] for k in keys] if all(k in found for k in keys) else None


@st.cache_data(show_spinner=False, max_entries=64)
def _read_metric_rows(digest: str, store_dir: str, _results, _metrics):
    got = stored_metric_rows(_results, _metrics, store=default_store())
    if got is None:
        raise _NoRows(digest)
    return got


def stored_unit_metrics(model_name: str, results: Sequence[ConditionResult]):
    """``(rows, spectra)`` a sweep stored for the unit of ``results`` (:func:`sweep_ordered`),
    or None; a found entry is read from disk once per server process."""
    metrics = unit_metrics_setup(model_name)
    try:
        return _read_metric_rows(key_digest(metrics.key(results)),
                                 str(default_store().directory), results, metrics)
    except _NoRows:
        return None


def unit_metrics_job(model_name: str, results: Sequence[ConditionResult]) -> Job | None:
    """The job measuring the unit of ``results``, if any session submitted one."""
    return default_manager().get(metrics_job_key(results, unit_metrics_setup(model_name)))


def submit_unit_metrics(model_name: str, results: Sequence[ConditionResult]) -> Job:
    """Measure the unit of ``results`` in the background and store its rows (shared job)."""
    return metrics_job(default_manager(), cached_model(model_name), results,
                       unit_metrics_setup(model_name), store=default_store())


def unit_metrics_panel(model_name: str, results: Sequence[ConditionResult], *, unit: int,
                       current: tuple[str, float]) -> None:
    """The unit's metric plots (:func:`show_unit_metrics`) when stored or measured by a finished
    job; else a Measure button (key ``explorer_metrics_compute``), the job's progress or its
    failure. ``results``: :func:`sweep_ordered`; ``current``: the shown ``(sign, alpha)``."""
    try:
        metrics = unit_metrics_setup(model_name)
        measured = stored_unit_metrics(model_name, results)
    except Exception as exc:  # e.g. the similarity ensemble's weights are not here
        show_error(exc, context="Cannot set up the metrics")
        return
    finished = job_panel(
        lambda: unit_metrics_job(model_name, results),
        lambda: submit_unit_metrics(model_name, results),
        key="explorer_metrics", label=f"Measure unit {unit}: similarity, objectness, spectra",
        needed=measured is None, primary=False, failure="Measuring the unit failed",
        help=f"Measures the unit's images as a sweep does (ensemble "
             f"{', '.join(METRIC_SPEC.ensemble)}) in the background; the rows are kept on disk.")
    measured = finished if measured is None else measured
    if measured is not None:
        show_unit_metrics(*measured, metrics.statuses, current=current)


def objectness_note(status: str) -> str:
    """One line saying why objectness is not plotted: the detector's own ``status`` (which names
    a missing weights file, where to put it and where to get it), or ``"off"``."""
    return f"Objectness unavailable: {status.removeprefix('unavailable: ')}"


def show_unit_metrics(rows, spectra, statuses: dict, *, current: tuple[str, float]) -> None:
    """Similarity, objectness and spectral slope against α (both signs; the shown condition
    ringed), and the control/ablated power ratio at the shown α.

    ``rows``, ``spectra``: one unit's :func:`stored_unit_metrics`; ``statuses``: the metric
    setup's (``Metrics.statuses``); ``current``: the shown ``(sign, alpha)``. Objectness without
    a single finite value is one :func:`objectness_note` line instead of a plot.
    """
    stem = f"{rows.model.iloc[0]}_unit{rows.unit.iloc[0]}"

    def panel(column, fig, name: str) -> None:
        with column:
            st.plotly_chart(fig, key=f"explorer_fig_{name}")
            export_panel(fig, name=f"{stem}_{name}", key=f"explorer_{name}_export")

    left, right = st.columns(2)
    panel(left, unit_metric_vs_alpha_figure(
        rows, "similarity", current=current,
        y_title="similarity to the control images (held-out ensemble)"),
        "similarity")
    if rows.objectness.notna().any():
        panel(right, unit_metric_vs_alpha_figure(
            rows, "objectness", current=current, y_title="objectness (highest box score)"),
            "objectness")
    else:
        right.info(objectness_note(statuses.get("objectness", "off")))
    left, right = st.columns(2)
    panel(left, unit_metric_vs_alpha_figure(
        rows, "spectral_slope", current=current, y_title="spectral slope (log-log)"),
        "spectral_slope")
    if current[1] > 0:
        panel(right, spectrum_ratio_figure(spectra, alpha=current[1]), "spectrum_ratio")
    else:
        right.caption("Pick α > 0 to see the control / ablated power ratio.")
    held_out = [n for n in METRIC_SPEC.ensemble if n != rows.model.iloc[0]]
    st.caption(f"Similarity: mean cosine similarity of penultimate activations to the control "
               f"images, averaged over the held-out ensemble {', '.join(held_out)} (the "
               f"ensemble {', '.join(METRIC_SPEC.ensemble)} without the optimised network; "
               f"the full ensemble's is the exported table's similarity_full; control images: to "
               f"the other control images). Spectral slope: log-log slope of the radial power "
               f"spectrum over {SLOPE_RANGE[0]:g}–{SLOPE_RANGE[1]:g} cycles/image. Dots are "
               f"restarts, lines their mean; the power ratio is the control's mean spectrum over "
               f"the ablated one at the shown α.")
