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

from collections.abc import Sequence

import streamlit as st

from signseg_core.conditions import Condition
from signseg_core.jobs import Job, default_manager
from signseg_core.models.imagenet import NUM_CLASSES, class_names
from signseg_core.optimize.request import VisualizeRequest, unit_conditions
from signseg_core.optimize.results import ConditionResult, load_condition
from signseg_core.optimize.settings import ConditionKey, VisualizeSettings
from signseg_core.store import default_store, key_digest
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


def unit_job(request: VisualizeRequest) -> Job | None:
    """The job computing ``request`` in the default store, if any session submitted one."""
    return default_manager().get(visualize_job_key(request))


def submit_unit(request: VisualizeRequest, *, label: str = "") -> Job:
    """Compute a unit's request in the background (stored conditions are read, not redone);
    a request identical to a queued, running or recently finished one shares that job. The
    default label names the model, the unit and the budget."""
    s, unit = request.settings, request.conditions[0].unit
    label = label or (f"{request.model.name} unit {unit_text(unit)}: {s.generator} "
                      f"{s.restarts} restarts × {s.generations} generations")
    return visualize_job(default_manager(), request, store=default_store(), label=label)


def results_by_key(results: Sequence[ConditionResult]) -> dict[tuple, ConditionResult]:
    """A finished job's results by :attr:`Condition.key`."""
    return {r.condition.key: r for r in results}


def current_key(unit: int, sign: str, alpha: float) -> tuple:
    """:attr:`Condition.key` of the shown condition (the control for alpha 0)."""
    return Condition(unit, sign, alpha).key

