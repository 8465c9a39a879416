"""Ablation explorer: a unit's preferred images as its positive or its negative input weights are
ablated (the paper's Fig 2B–C), read from the store or computed in the background."""

from __future__ import annotations

import streamlit as st

from signseg_core.conditions import DEFAULT_ALPHAS, SIGNS, parse_alpha, parse_sign, parse_unit
from signseg_core.figures.compare import alpha_strip
from signseg_core.figures.plots import activation_vs_alpha_figure
from signseg_core.sweeps.preview import default_settings, describe_defaults
from signseg_ui.cached_models import require_model
from signseg_ui.error_display import show_error
from signseg_ui.evolution_settings import evolution_settings
from signseg_ui.explorer import (
    DEFAULT_ALPHA,
    DEFAULT_SIGN,
    DEFAULT_UNIT,
    N_CONDITIONS,
    current_key,
    results_by_key,
    stored_results,
    submit_unit,
    unit_job,
    unit_request,
    unit_text,
)
from signseg_ui.export_widgets import export_panel
from signseg_ui.jobs_widget import job_panel
from signseg_ui.navigation import sidebar_nav
from signseg_ui.pickers import model_picker
from signseg_ui.unit_images import condition_label, show_alpha_strip, show_current
from signseg_ui.unit_metrics import sweep_ordered, unit_metrics_panel
from signseg_ui.widget_choices import remember_choice, restore_choice

st.set_page_config(page_title="Ablation explorer · signseg", layout="wide")
sidebar_nav()
st.title("Ablation explorer")
st.write(
    "Pick a readout unit, then remove a fraction α of its positive or of its negative input "
    "weights (largest first). Each condition's preferred images come from evolution-strategy "
    "restarts over a generator's codes; the number above each image is the ablated unit's "
    "activation."
)

name = model_picker(key="explorer_model")
model = require_model(name)
units = list(range(model.n_classes))
default_unit = DEFAULT_UNIT if DEFAULT_UNIT < len(units) else 0
restore_choice("explorer_unit", "unit", units, lambda raw: parse_unit(raw, len(units)),
               default_unit)
restore_choice("explorer_sign", "sign", SIGNS, parse_sign, DEFAULT_SIGN)
restore_choice("explorer_alpha", "alpha", DEFAULT_ALPHAS,
               lambda raw: parse_alpha(raw, choices=DEFAULT_ALPHAS), DEFAULT_ALPHA)

col_unit, col_sign, col_alpha = st.columns([2, 1, 2])
unit = col_unit.selectbox("Unit (type a class name or index)", units, key="explorer_unit",
                          format_func=unit_text)
sign = col_sign.radio("Weights ablated", SIGNS, key="explorer_sign", horizontal=True)
alpha = col_alpha.select_slider("Ablation strength α", DEFAULT_ALPHAS, key="explorer_alpha",
                                format_func=lambda a: f"{a:.1f}")
remember_choice("explorer_unit", "unit", str(unit))
remember_choice("explorer_sign", "sign", sign)
remember_choice("explorer_alpha", "alpha", f"{alpha:g}")

with st.expander("Optimisation settings"):
    settings = evolution_settings(key="explorer", defaults=default_settings(name), reset_on=name,
                                  caption=describe_defaults())
if settings is None:
    st.stop()
try:
    request = unit_request(name, unit, settings)  # built once: its keys serve every read below
    found, job = stored_results(request), unit_job(request)
except Exception as exc:  # the UI layer turns engine errors into messages
    show_error(exc, context="Cannot read the results")
    st.stop()

missing = N_CONDITIONS - len(found)
finished = job_panel(lambda: job, lambda: submit_unit(request), key="explorer",
                     label=f"Compute unit {unit} ({missing} conditions)", needed=missing > 0,
                     help="Runs in the background; results are kept on disk.")
found = {**results_by_key(finished or []), **found}

shown = current_key(unit, sign, alpha)
label = condition_label(sign, alpha)
st.subheader(f"{unit_text(unit)} — {label}")
if shown in found:
    show_current(found[shown], label=label)
else:
    st.info("This condition is not computed yet at these settings; its images appear here when "
            "the unit's job finishes.")

if found:
    st.subheader("The whole α strip")
    show_alpha_strip(found, unit, current=shown)
    export_panel(alpha_strip(list(found.values()), tile=160),
                 name=f"{name}_unit{unit}_alpha_strip", key="explorer_strip_export")
    activation_fig = activation_vs_alpha_figure(list(found.values()), current=(sign, alpha))
    st.plotly_chart(activation_fig, key="explorer_fig")
    export_panel(activation_fig, name=f"{name}_unit{unit}_activation_vs_alpha",
                 key="explorer_fig_export")
    st.caption("Ablated activation: the best objective over restarts with the weights removed. "
               "Intact logit: the unmodified unit's logit on that same image.")

ordered = sweep_ordered(found, unit)
if found and ordered is None:
    st.caption("Similarity, objectness and spectrum against α follow once all "
               f"{N_CONDITIONS} conditions of the unit are computed.")
if ordered is not None:
    st.subheader("Similarity, objectness and spectrum")
    unit_metrics_panel(name, ordered, unit=unit, current=(sign, alpha))
