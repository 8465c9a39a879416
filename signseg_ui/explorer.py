"""UI helpers of the ablation explorer page: URL-restored choices, store reads, the unit's job.

A unit's explorer view needs its 21 conditions (the control plus both signs × ten strengths).
They are read from the result store (each read cached by the condition's key digest, so moving
the alpha slider over stored conditions costs nothing); what is missing is computed by ONE
background :func:`~signseg_core.sweeps.tasks.visualize_job` for the whole unit, whose key depends
only on the model, generator, settings and unit, so every browser session asking for the same unit
watches the same computation.

Once all 21 are there, the unit's sweep metrics (similarity to the control images, objectness,
spectral slope, mean spectra) are read from the entry :func:`~signseg_core.sweeps.run.run_sweep`
stores per unit, under the same metric setup as a default sweep (:data:`METRIC_SPEC`); when it is
missing, one background :func:`~signseg_core.sweeps.tasks.metrics_job` measures the unit and stores
it.

Streamlit glue only; the computations live in ``signseg_core``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from signseg_core.conditions import DEFAULT_ALPHAS, SIGNS, Condition, check_unit, condition_grid
from signseg_core.figures.plots import spectrum_ratio_figure, unit_metric_vs_alpha_figure
from signseg_core.generators.catalog import list_generators, make_generator
from signseg_core.jobs import Job, default_manager
from signseg_core.models.imagenet import NUM_CLASSES, class_names
from signseg_core.optimize.visualize import (
    ConditionKey,
    ConditionResult,
    VisualizeSettings,
    condition_key,
    load_condition,
)
from signseg_core.paths import no_downloads
from signseg_core.store import default_store, key_digest
from signseg_core.sweeps.run import SLOPE_RANGE, Metrics, SweepSpec
from signseg_core.sweeps.tasks import (
    metrics_job,
    metrics_job_key,
    stored_metric_rows,
    visualize_job,
    visualize_job_key,
)

from .common import cached_model

DEFAULT_UNIT = 373  # macaque: the paper's Fig 2 unit
DEFAULT_SIGN = "positive"
DEFAULT_ALPHA = 0.5
#: Conditions per unit: the control plus both signs × ten strengths.
N_CONDITIONS = len(condition_grid([0]))
#: Optimisation settings a CPU previews in a few minutes per unit.
PREVIEW_SETTINGS = {"generator": "fourier", "restarts": 4, "generations": 20, "seed": 0}
#: Settings whose results ship precomputed in the store for the paper's default units.
PRECOMPUTED_SETTINGS = {
    "efficientnet_lite0": {"generator": "fourier", "restarts": 5, "generations": 60, "seed": 0},
}
#: The metric setup of the unit's metric plots: a default sweep's (similarity ensemble, LPIPS,
#: detector), so the rows ``python -m signseg_core sweep`` stores for a unit are found here.
METRIC_SPEC = SweepSpec()


# -- choices restored from the URL -------------------------------------------------------------

def parse_unit(raw: str, n_units: int = NUM_CLASSES) -> int:
    """``"373"`` → 373; ValueError naming the allowed range otherwise."""
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"unit must be an integer from 0 to {n_units - 1}, got {raw!r}") from None
    return check_unit(value, n_units)


def parse_sign(raw: str) -> str:
    """``"negative"`` → "negative"; ValueError naming the choices otherwise."""
    if raw not in SIGNS:
        raise ValueError(f"unknown sign {raw!r}; choose from {list(SIGNS)}")
    return raw


def parse_alpha(raw: str) -> float:
    """``"0.3"`` → 0.3 when it is one of :data:`DEFAULT_ALPHAS`; ValueError otherwise."""
    try:
        value = round(float(raw), 6)
    except ValueError:
        value = None
    if value not in DEFAULT_ALPHAS:
        raise ValueError(f"alpha must be one of {[f'{a:g}' for a in DEFAULT_ALPHAS]}, got {raw!r}")
    return value


def restore_choice(key: str, param: str, options: Sequence, parse: Callable, default) -> None:
    """Set widget ``key``'s value before it is drawn: the session's remembered choice, else the
    URL's ``?param=``, else ``default``. A URL value that does not parse (or is not among
    ``options``) shows an ``st.error`` and falls back to ``default``."""
    for value in (st.session_state.get(key), st.session_state.get(f"_{key}")):
        if value is not None and value in options:
            st.session_state[key] = value
            return
    value, raw = default, st.query_params.get(param)
    if raw is not None:
        try:
            value = parse(raw)
            if value not in options:
                raise ValueError(f"{value!r} is not offered here")
        except ValueError as exc:
            st.error(f"Cannot open ?{param}={raw}: {exc}. Showing {default} instead.")
            value = default
    st.session_state[key] = value


def remember_choice(key: str, param: str, text: str) -> None:
    """Keep widget ``key``'s value across pages and write it to the URL as ``?param=text``."""
    st.session_state[f"_{key}"] = st.session_state[key]
    if st.query_params.get(param) != text:
        st.query_params[param] = text


def unit_text(unit: int) -> str:
    """``"373 macaque"`` for ImageNet readouts, else the index."""
    return f"{unit} {class_names()[unit]}" if 0 <= unit < NUM_CLASSES else str(unit)


# -- optimisation settings ---------------------------------------------------------------------

def default_settings(model_name: str) -> dict:
    """The settings widgets' defaults for ``model_name``: the precomputed ones where the store
    ships results (instant for the paper's default units), else a quick CPU preview."""
    return dict(PRECOMPUTED_SETTINGS.get(model_name, PREVIEW_SETTINGS))


def generator_choices() -> list[str]:
    """Generators this machine can run: the weight-free ones plus GANs whose weights are here."""
    return [g["name"] for g in list_generators() if g["weights_present"]]


def explorer_settings(*, generator: str, restarts: int, generations: int,
                      seed: int) -> VisualizeSettings:
    """The :class:`VisualizeSettings` the page uses (the rest at their defaults)."""
    return VisualizeSettings(generator=generator, restarts=int(restarts),
                             generations=int(generations), seed=int(seed))


@st.cache_resource(show_spinner="Building the generator…", max_entries=4)
def cached_generator(name: str, device: str):
    """The generator ``name`` on ``device``, shared read-only by every session and job."""
    return make_generator(name, device=device)


# -- stored results and the unit's job ---------------------------------------------------------

class _Missing(Exception):
    """Raised inside the cached read so that a missing entry is never cached."""


@st.cache_data(show_spinner=False, max_entries=512)
def _read_condition(digest: str, store_dir: str, _key: ConditionKey) -> ConditionResult:
    result = load_condition(default_store(), _key)
    if result is None:
        raise _Missing(digest)
    return result


def unit_request(model_name: str, unit: int, settings: VisualizeSettings):
    """``(model, generator, conditions, keys)`` of ``unit``'s 21 conditions under ``settings``."""
    model = cached_model(model_name)
    generator = cached_generator(settings.generator, str(model.device))
    conditions = condition_grid([unit])
    keys = [condition_key(model, generator, c, settings) for c in conditions]
    return model, generator, conditions, keys


def stored_results(conditions, keys) -> dict[tuple, ConditionResult]:
    """The stored results of ``conditions`` (store ``keys`` in the same order), by
    :attr:`Condition.key`; missing ones are absent. Reads are cached per entry."""
    store_dir, found = str(default_store().directory), {}
    for condition, key in zip(conditions, keys):
        try:
            found[condition.key] = _read_condition(key_digest(key), store_dir, key)
        except _Missing:
            pass
    return found


def stored_unit(model_name: str, unit: int,
                settings: VisualizeSettings) -> dict[tuple, ConditionResult]:
    """The stored results of ``unit``'s conditions, by :attr:`Condition.key` (missing: absent)."""
    _, _, conditions, keys = unit_request(model_name, unit, settings)
    return stored_results(conditions, keys)


def unit_job_key(model_name: str, unit: int, settings: VisualizeSettings) -> dict:
    """The key :func:`~signseg_core.sweeps.tasks.visualize_job` gives the unit's job (all 21
    conditions, with the cached generator) in the default store."""
    model, generator, conditions, _ = unit_request(model_name, unit, settings)
    return visualize_job_key(model, conditions, settings=settings, generator=generator)[0]


def unit_job(model_name: str, unit: int, settings: VisualizeSettings) -> Job | None:
    """The job computing ``unit`` under ``settings``, if any session submitted one."""
    return default_manager().get(unit_job_key(model_name, unit, settings))


def submit_unit(model_name: str, unit: int, settings: VisualizeSettings) -> Job:
    """Compute ``unit``'s conditions in the background (stored ones are read, not redone);
    a request identical to a queued, running or recently finished one shares that job."""
    model, generator, conditions, _ = unit_request(model_name, unit, settings)
    label = (f"{model_name} unit {unit_text(unit)}: {settings.generator} "
             f"{settings.restarts} restarts × {settings.generations} generations")
    return visualize_job(default_manager(), model, conditions, settings=settings,
                         generator=generator, store=default_store(), label=label)


def results_by_key(results: Sequence[ConditionResult]) -> dict[tuple, ConditionResult]:
    """A finished job's results by :attr:`Condition.key`."""
    return {r.condition.key: r for r in results}


def current_key(unit: int, sign: str, alpha: float) -> tuple:
    """:attr:`Condition.key` of the shown condition (the control for alpha 0)."""
    return Condition(unit, sign, alpha).key


# -- the unit's sweep metrics ------------------------------------------------------------------

@st.cache_resource(show_spinner="Setting up the similarity ensemble and the detector…",
                   max_entries=2)
def cached_metrics(device: str, ensemble: tuple[str, ...], lpips: bool,
                   detector: str | None) -> Metrics:
    """The sweep's metric models (read-only, shared by every session and job); the ensemble is
    the dashboard's cached models. Weights added later are seen after a server restart."""
    spec = SweepSpec(ensemble=ensemble, lpips=lpips, detector=detector)
    with no_downloads():  # opening a page never starts a download; the CLI sweep may
        return Metrics.build(spec, device, {n: cached_model(n, device) for n in ensemble})


def unit_metrics_setup(model_name: str) -> Metrics:
    """:func:`cached_metrics` of :data:`METRIC_SPEC` on ``model_name``'s device."""
    spec = METRIC_SPEC
    return cached_metrics(str(cached_model(model_name).device), tuple(spec.ensemble),
                          spec.lpips, spec.detector)


def sweep_ordered(found: dict[tuple, ConditionResult], unit: int) -> list[ConditionResult] | None:
    """``unit``'s 21 results in the order a sweep measures them, or None while any is missing."""
    keys = [c.key for c in condition_grid([unit])]
    return [found[k] for k in keys] if all(k in found for k in keys) else None


@st.cache_data(show_spinner=False, max_entries=64)
def _read_metric_rows(digest: str, store_dir: str, _results, _metrics):
    got = stored_metric_rows(_results, _metrics, store=default_store())
    if got is None:
        raise _Missing(digest)
    return got


def stored_unit_metrics(model_name: str, results: Sequence[ConditionResult]):
    """``(rows, spectra)`` a sweep stored for the unit of ``results`` (:func:`sweep_ordered`),
    or None; a found entry is read from disk once per server process."""
    metrics = unit_metrics_setup(model_name)
    try:
        return _read_metric_rows(key_digest(metrics.key(results)),
                                 str(default_store().directory), results, metrics)
    except _Missing:
        return None


def unit_metrics_job(model_name: str, results: Sequence[ConditionResult]) -> Job | None:
    """The job measuring the unit of ``results``, if any session submitted one."""
    return default_manager().get(metrics_job_key(results, unit_metrics_setup(model_name)))


def submit_unit_metrics(model_name: str, results: Sequence[ConditionResult]) -> Job:
    """Measure the unit of ``results`` in the background and store its rows (shared job)."""
    return metrics_job(default_manager(), cached_model(model_name), results,
                       unit_metrics_setup(model_name), store=default_store())


def unit_metrics(model_name: str, results: Sequence[ConditionResult]):
    """``(metrics, measured, job)`` of the unit of ``results`` (:func:`sweep_ordered`): the
    metric setup, the ``(rows, spectra)`` stored or of a finished job (None if neither), and
    the job measuring it (None if no session submitted one)."""
    metrics = unit_metrics_setup(model_name)
    measured, job = stored_unit_metrics(model_name, results), unit_metrics_job(model_name, results)
    if measured is None and job is not None and job.state == "done":
        measured = job.result()
    return metrics, measured, job


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
    from .export_widgets import export_panel

    stem = f"{rows.model.iloc[0]}_unit{rows.unit.iloc[0]}"

    def panel(column, fig, name: str) -> None:
        with column:
            st.plotly_chart(fig, key=f"explorer_fig_{name}")
            export_panel(fig, name=f"{stem}_{name}", key=f"explorer_{name}_export")

    left, right = st.columns(2)
    panel(left, unit_metric_vs_alpha_figure(
        rows, "similarity", current=current, y_title="similarity to the control images"),
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
    st.caption(f"Similarity: mean cosine similarity of penultimate activations to the control "
               f"images, averaged over {', '.join(METRIC_SPEC.ensemble)} (control images: to "
               f"the other control images). Spectral slope: log-log slope of the radial power "
               f"spectrum over {SLOPE_RANGE[0]:g}–{SLOPE_RANGE[1]:g} cycles/image. Dots are "
               f"restarts, lines their mean; the power ratio is the control's mean spectrum over "
               f"the ablated one at the shown α.")


# -- drawing -----------------------------------------------------------------------------------

def condition_label(sign: str, alpha: float) -> str:
    """``"negative weights, α = 0.4"``; ``"control (intact)"`` for alpha 0."""
    return "control (intact)" if alpha == 0 else f"{sign} weights, α = {alpha:.1f}"


def current_caption(result: ConditionResult, *, label: str) -> str:
    """The big image's caption: ``"negative weights, α = 0.4 · activation 0.17 · intact 0.11"``
    (the best restart's scores; a stable hook for tests)."""
    best = result.best_index
    return (f"{label} · activation {result.best_scores[best]:.2f} · "
            f"intact {result.intact_scores[best]:.2f}")


def show_current(result: ConditionResult, *, label: str) -> None:
    """The best image large with its score, then every restart with its score above it."""
    best = result.best_index
    n = len(result.best_scores)
    left, right = st.columns([1, 2])
    left.markdown(f"**{label}: best of {n} restart{'s' * (n != 1)}**")
    left.image(result.images[best], width=300, caption=current_caption(result, label=label))
    right.markdown("**Every restart** (activation of the ablated unit above each image)")
    columns = right.columns(max(len(result.best_scores), 4))
    for i, column in enumerate(columns[:len(result.best_scores)]):
        column.markdown(f"**{result.best_scores[i]:.2f}**" + (" ★" if i == best else ""))
        column.image(result.images[i], caption=f"restart {i + 1}")


def show_alpha_strip(found: dict[tuple, ConditionResult], unit: int, *, current: tuple) -> None:
    """Fig 2B–C: one row per sign, the best image per alpha with its activation above it."""
    for sign in SIGNS:
        st.markdown(f"**{sign.capitalize()} weights ablated**")
        columns = st.columns(len(DEFAULT_ALPHAS))
        for alpha, column in zip(DEFAULT_ALPHAS, columns):
            key = Condition(unit, sign, alpha).key
            result = found.get(key)
            mark = " ◀" if key == current else ""
            if result is None:
                column.markdown(f"α {alpha:.1f}: —")
                continue
            column.markdown(f"**{result.best_scores[result.best_index]:.2f}**{mark}")
            column.image(result.best_image, caption=f"α = {alpha:.1f}")

