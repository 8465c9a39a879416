"""The explorer's results for one unit: the condition on screen (every generator of a pooled
image set), the α strip, activation against α and, once the unit is complete, its metrics.

Streamlit glue only; the computations live in ``signseg_core``.
"""

from __future__ import annotations

import streamlit as st

from signseg_core.figures.compare import alpha_strip
from signseg_core.figures.plots import activation_vs_alpha_figure
from signseg_core.optimize.results import ConditionResult

from .explorer import N_CONDITIONS, current_key, pooled_best, restarts_text, unit_text
from .export_widgets import export_panel
from .unit_images import condition_label, show_alpha_strip, show_current
from .unit_metrics import sweep_ordered, unit_metrics_panel


def show_unit_results(name: str, unit: int, sign: str, alpha: float,
                      by_generator: dict[str, dict[tuple, ConditionResult]], *,
                      restarts: int) -> None:
    """Everything the explorer shows of ``unit``'s stored results (``by_generator``: each
    generator's results by :attr:`Condition.key`; several generators are a pooled set)."""
    pooled = len(by_generator) > 1
    shown = current_key(unit, sign, alpha)
    found = pooled_best(by_generator)
    image_set = " + ".join(f"{g} {restarts_text(restarts)}" for g in by_generator)

    label = condition_label(sign, alpha)
    st.subheader(f"{unit_text(unit)} — {label}")
    st.caption(f"Image set: {image_set} (pooled); each generator's images below."
               if pooled else f"Image set: {image_set} (one generator, not pooled).")
    for generator, results in by_generator.items():
        if shown in results:
            show_current(results[shown], label=label + (f" · {generator}" if pooled else ""))
    if shown not in found:
        st.info("This condition is not computed yet at these settings; its images appear here "
                "as soon as it is done (the condition on screen is computed first).")

    if found:
        st.subheader("The whole α strip")
        show_alpha_strip(found, unit, current=shown)
        export_panel(alpha_strip(list(found.values()), tile=160),
                     name=f"{name}_unit{unit}_alpha_strip", key="explorer_strip_export")
        activation_fig = activation_vs_alpha_figure(list(found.values()), current=(sign, alpha),
                                                    title=f"{unit_text(unit)}: activation vs α")
        st.plotly_chart(activation_fig, key="explorer_fig")
        export_panel(activation_fig, name=f"{name}_unit{unit}_activation_vs_alpha",
                     key="explorer_fig_export")
        st.caption("Ablated activation: the best objective over restarts with the weights "
                   "removed. Intact logit: the unmodified unit's logit on that same image."
                   + (" Pooled sets show the best image over all generators." if pooled else ""))

    ordered = [r for g in by_generator.values() for r in (sweep_ordered(g, unit) or [None])]
    if found and None in ordered:
        st.caption("Similarity, objectness and spectrum against α follow once all "
                   f"{N_CONDITIONS} conditions of the unit are computed.")
    if found and None not in ordered:
        st.subheader("Similarity, objectness and spectrum")
        unit_metrics_panel(name, ordered, unit=unit, current=(sign, alpha))
