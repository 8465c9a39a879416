"""Drawing a unit's preferred images in the ablation explorer: the shown condition large with
every restart beside it, and the α strip of both signs (the paper's Fig 2B–C)."""

from __future__ import annotations

import streamlit as st

from signseg_core.conditions import DEFAULT_ALPHAS, SIGNS, Condition
from signseg_core.optimize.results import ConditionResult


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

