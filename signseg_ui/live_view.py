"""The explorer's budget choice, its time estimates and the live image of a running unit.

A unit nobody precomputed is computed at a budget the user picks: the CPU preview (chosen by
measurement, ``docs/benchmarks.md``) or the full budget, each button saying how long it takes on
this device at its measured images/s; while it runs, the best image so far of the condition
being evolved is shown under the progress bar.

Streamlit glue only; the computations live in ``signseg_core``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from signseg_core.jobs import Job
from signseg_core.optimize.live import Preview
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.throughput import say_duration
from signseg_core.sweeps.preview import (
    BUDGETS,
    budget_settings,
    default_budget,
    iterations,
    precomputed_units,
)
from signseg_core.sweeps.ray_jobs import ray_address

from .explorer import N_CONDITIONS, expected_time, restarts_text, unit_request, unit_text
from .unit_images import condition_label

#: What each budget choice is called on the page.
BUDGET_NAMES = {"preview": "Preview", "full": "Full budget", "custom": "Custom"}


def unit_format(model_name: str) -> Callable[[int], str]:
    """The unit picker's labels: ``"373 macaque ★ precomputed"`` for units whose results ship."""
    ready = set(precomputed_units(model_name))
    return lambda unit: unit_text(unit) + (" ★ precomputed" if unit in ready else "")


def precomputed_note(model_name: str) -> str:
    """One line listing the units that are instant, or "" when none ship for the model."""
    units = precomputed_units(model_name)
    if not units:
        return ""
    where = "on the Ray cluster" if ray_address() is not None else "on this machine"
    return ("Instant (★, results ship with signseg): " + ", ".join(unit_text(u) for u in units)
            + f". Any other unit is computed {where}.")


def on_this(device: str) -> str:
    """``"on this CPU"`` / ``"on this GPU"``, and when jobs run on a Ray cluster
    (``SIGNSEG_RAY_ADDRESS``), that the estimate is this machine's, not the cluster's."""
    where = f"on this {'GPU' if device.startswith('cuda') else 'CPU'}"
    return where + (" (jobs run on the Ray cluster)" if ray_address() is not None else "")


def budget_words(model_name: str, budget: str, unit: int, device: str) -> str:
    """``"Preview: 2 restarts × 20 generations, population 10 — about 4 min for a unit on this
    CPU"``; the time from this device's measured images/s."""
    s = budget_settings(model_name, budget)
    request = unit_request(model_name, unit, s)
    seconds = expected_time([request], N_CONDITIONS)
    if iterations(s) == "steps":  # gradient ascent: one image per restart per step
        what = f"{s.generations} steps of {s.generator}"
    else:
        what = f"{s.generations} generations, population {request.popsize}"
    return (f"{BUDGET_NAMES[budget]}: {restarts_text(s.restarts)} × {what} — "
            f"{say_duration(seconds)} for a unit {on_this(device)}")


def budget_picker(model_name: str, unit: int, device: str) -> str:
    """A radio of ``preview`` / ``full`` / ``custom`` with each budget's expected time for a
    whole unit on this device; the default is the preview on a CPU, the full budget on a GPU."""
    options = [*BUDGETS, "custom"]
    if "explorer_budget" not in st.session_state:
        st.session_state["explorer_budget"] = default_budget(device)
    try:
        words = {b: budget_words(model_name, b, unit, device) for b in BUDGETS}
    except Exception:  # no estimate (e.g. a generator's weights are missing): names only
        words = {}
    words["custom"] = "Custom: the settings below"
    return st.radio("Budget", options, key="explorer_budget",
                    format_func=lambda b: words.get(b, BUDGET_NAMES[b]),
                    help="The preview is chosen so a CPU shows a condition in seconds and a "
                         "whole unit in minutes (docs/benchmarks.md); the full budget is what "
                         "the precomputed results and the paper use.")


def compute_label(unit: int, missing: int, requests: Sequence[VisualizeRequest],
                  device: str) -> str:
    """``"Compute unit 12 (21 conditions, about 4 min on this CPU)"``."""
    try:
        eta = f", {say_duration(expected_time(requests, missing))} {on_this(device)}"
    except Exception:  # the estimate is a courtesy: never block the button on it
        eta = ""
    return f"Compute unit {unit} ({missing} condition{'s' * (missing != 1)}{eta})"


def live_preview(shown: tuple) -> Callable[[Job], None]:
    """Draws a running job's best image so far (its :class:`Preview`), saying which condition it
    is and whether that is the one on screen."""
    def draw(job: Job) -> None:
        preview = job.latest
        if not isinstance(preview, Preview):
            st.caption("The first image appears after the first generation (or step).")
            return
        unit, sign, alpha = preview.condition
        label = condition_label(sign, alpha)
        left, right = st.columns([1, 3])
        left.image(preview.image, width=224,
                   caption=f"best so far · activation {preview.activation:.2f}")
        here = " (the condition on screen)" if preview.condition == shown else ""
        doing = "Optimising" if preview.iteration == "step" else "Evolving"
        right.markdown(f"**{doing} now: {label}**{here} — {preview.generator}, "
                       f"{preview.iteration} {preview.generation}/{preview.generations}, "
                       "best of restart "
                       f"{preview.restart + 1}. Finished conditions appear below as they "
                       "are stored.")
    return draw


def expected_or_none(requests: Sequence[VisualizeRequest], missing: int) -> float | None:
    """:func:`~signseg_ui.explorer.expected_time`, or None when it cannot be measured."""
    try:
        return expected_time(requests, missing)
    except Exception:  # the estimate is a courtesy: never block a computation on it
        return None
