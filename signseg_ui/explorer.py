"""The ablation explorer's unit: its request, its stored results and the job computing the rest.

A unit's explorer view needs its 21 conditions (the control plus both signs × ten strengths).
They are read from the result store (each read cached by the condition's key digest, so moving
the alpha slider over stored conditions costs nothing); what is missing is computed by ONE
background :func:`~signseg_core.sweeps.tasks.visualize_job` for the whole unit, whose key depends
only on the model, generator, settings and unit, so every browser session asking for the same unit
watches the same computation. The unit's metrics are :mod:`signseg_ui.unit_metrics`'s; drawing
its images is :mod:`signseg_ui.unit_images`'s.

Streamlit glue only; the computations live in ``signseg_core``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import streamlit as st

from signseg_core.conditions import Condition
from signseg_core.jobs import Job, default_manager
from signseg_core.models.imagenet import NUM_CLASSES, class_names
from signseg_core.optimize.request import VisualizeRequest, unit_conditions
from signseg_core.optimize.results import ConditionResult, load_condition
from signseg_core.optimize.settings import ConditionKey, VisualizeSettings
from signseg_core.optimize.throughput import expected_seconds, images_per_second
from signseg_core.store import default_store, key_digest
from signseg_core.sweeps.preview import iterations
from signseg_core.sweeps.tasks import visualize_job, visualize_job_key

from .cached_models import cached_generator, cached_model

DEFAULT_UNIT = 373  # macaque: the paper's Fig 2 unit
DEFAULT_SIGN = "positive"
DEFAULT_ALPHA = 0.5
#: Conditions per unit: the control plus both signs × ten strengths.
N_CONDITIONS = len(unit_conditions(0))


def last_unit(units) -> int:
    """The unit the explorer showed last in this session (before: :data:`DEFAULT_UNIT`) when it
    is among ``units``, else the first."""
    seen = st.session_state.get("_explorer_unit", DEFAULT_UNIT)  # widget_choices.remember_choice
    return seen if seen in units else units[0]


def unit_text(unit: int) -> str:
    """``"373 macaque"`` for ImageNet readouts, else the index."""
    return f"{unit} {class_names()[unit]}" if 0 <= unit < NUM_CLASSES else str(unit)


def restarts_text(n: int) -> str:
    """``"1 restart"``, ``"5 restarts"``."""
    return f"{n} restart{'s' * (n != 1)}"


# -- stored results and the unit's job ---------------------------------------------------------

class _Missing(Exception):
    """Raised inside the cached read so that a missing entry is never cached."""


@st.cache_data(show_spinner=False, max_entries=512)
def _read_condition(digest: str, store_dir: str, _key: ConditionKey) -> ConditionResult:
    result = load_condition(default_store(), _key)
    if result is None:
        raise _Missing(digest)
    return result


def unit_request(model_name: str, unit: int, settings: VisualizeSettings) -> VisualizeRequest:
    """The :class:`~signseg_core.optimize.request.VisualizeRequest` of ``unit``'s 21 conditions
    under ``settings``, on the session's cached model and generator."""
    model = cached_model(model_name)
    generator = cached_generator(settings.generator, str(model.device))
    return VisualizeRequest.for_unit(model, generator, unit, settings)


def stored_results(request: VisualizeRequest) -> dict[tuple, ConditionResult]:
    """The stored results of ``request`` by :attr:`Condition.key`; missing ones are absent.
    Reads are cached per entry (by key digest), so revisiting a condition costs nothing."""
    store_dir, found = str(default_store().directory), {}
    for condition, key in zip(request.conditions, request.keys):
        try:
            found[condition.key] = _read_condition(key_digest(key), store_dir, key)
        except _Missing:
            pass
    return found


def stored_unit(model_name: str, unit: int,
                settings: VisualizeSettings) -> dict[tuple, ConditionResult]:
    """The stored results of ``unit``'s conditions, by :attr:`Condition.key` (missing: absent)."""
    return stored_results(unit_request(model_name, unit, settings))


def unit_job(request: VisualizeRequest | Sequence[VisualizeRequest]) -> Job | None:
    """The job computing ``request`` (or several pooled, one per generator) in the default
    store, if any session submitted one; also while it winds down after a cancel."""
    return default_manager().get(visualize_job_key(request), cancelling=True)


def submit_unit(request: VisualizeRequest | Sequence[VisualizeRequest], *, label: str = "",
                first: Condition | None = None, expected_s: float | None = None) -> Job:
    """Compute a unit's request (or pooled requests) in the background, ``first`` and its strip
    neighbours first, each condition stored as it finishes; a request identical to a queued,
    running or recently finished one shares that job. The default label names the model, the
    unit and the budget."""
    requests = [request] if isinstance(request, VisualizeRequest) else list(request)
    s, unit = requests[0].settings, requests[0].conditions[0].unit
    gens = " + ".join(r.settings.generator for r in requests)
    label = label or (f"{requests[0].model.name} unit {unit_text(unit)}: {gens} "
                      f"{restarts_text(s.restarts)} × {s.generations} {iterations(s)}")
    return visualize_job(default_manager(), requests, store=default_store(), label=label,
                         first=first, expected_s=expected_s)


def unit_requests(model_name: str, unit: int, settings: VisualizeSettings,
                  generators: Sequence[str] = ()) -> list[VisualizeRequest]:
    """One :func:`unit_request` per generator of the image set (``generators``; empty: the
    settings' own), pooled as a sweep pools them (``SweepSpec.generators``)."""
    names = list(dict.fromkeys(generators)) or [settings.generator]
    return [unit_request(model_name, unit, dataclasses.replace(settings, generator=g))
            for g in names]


def stored_pooled(requests: Sequence[VisualizeRequest]) -> dict[str, dict[tuple, ConditionResult]]:
    """:func:`stored_results` of each request, by generator name."""
    return {r.settings.generator: stored_results(r) for r in requests}


def pooled_best(by_generator: dict[str, dict[tuple, ConditionResult]]) -> dict[tuple,
                                                                                ConditionResult]:
    """Per condition, the result (of any generator in the set) whose best restart scored
    highest: the image the strip shows for a pooled set. Ties keep the first generator."""
    best: dict[tuple, ConditionResult] = {}
    for found in by_generator.values():
        for key, result in found.items():
            old = best.get(key)
            if old is None or result.best_scores.max() > old.best_scores.max():
                best[key] = result
    return best


def missing_count(requests: Sequence[VisualizeRequest],
                  by_generator: dict[str, dict[tuple, ConditionResult]]) -> int:
    """Conditions of the pooled set not stored yet (all generators)."""
    return sum(len(r.conditions) - len(by_generator.get(r.settings.generator, {}))
               for r in requests)


def expected_time(requests: Sequence[VisualizeRequest], missing: int) -> float:
    """Seconds to compute ``missing`` conditions of ``requests`` at this device's measured
    images/s (measured once per model, generator and device, then read from the cache)."""
    rate = images_per_second(requests[0])
    return expected_seconds(requests[0], missing, rate)


def results_by_key(results: Sequence[ConditionResult]) -> dict[tuple, ConditionResult]:
    """A finished job's results by :attr:`Condition.key`."""
    return {r.condition.key: r for r in results}


def current_key(unit: int, sign: str, alpha: float) -> tuple:
    """:attr:`Condition.key` of the shown condition (the control for alpha 0)."""
    return Condition(unit, sign, alpha).key

