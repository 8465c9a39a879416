"""Ablation explorer: a unit's preferred images as its positive or its negative input weights are
ablated (the paper's Fig 2B–C), read from the store or computed in the background."""

from __future__ import annotations

import streamlit as st

from signseg_core.conditions import DEFAULT_ALPHAS, SIGNS
from signseg_core.figures.plots import activation_vs_alpha_figure
from signseg_core.sweeps.tables import alpha_strip
from signseg_ui.common import model_picker, require_model, show_error, show_job, sidebar_nav
from signseg_ui.explorer import (
    DEFAULT_ALPHA,
    DEFAULT_SIGN,
    DEFAULT_UNIT,
    METRIC_SPEC,
    N_CONDITIONS,
    condition_label,
    current_key,
    default_settings,
    explorer_settings,
    generator_choices,
    parse_alpha,
    parse_sign,
    parse_unit,
    remember_choice,
    restore_choice,
    results_by_key,
    show_alpha_strip,
    show_current,
    show_unit_metrics,
    stored_unit,
    submit_unit,
    submit_unit_metrics,
    sweep_ordered,
    unit_job,
    unit_metrics,
    unit_text,
)
from signseg_ui.export_widgets import export_panel

st.set_page_config(page_title="Ablation explorer · signseg", layout="wide")
sidebar_nav()
st.title("Ablation explorer")
st.write(
    "Pick a readout unit, then remove a fraction α of its positive or of its negative input "
    "weights (largest first). Each condition's preferred images come from CMA-ES restarts over a "
    "generator's codes; the number above each image is the ablated unit's activation."
)

name = model_picker(key="explorer_model")
model = require_model(name)
units = list(range(model.n_classes))
default_unit = DEFAULT_UNIT if DEFAULT_UNIT < len(units) else 0
restore_choice("explorer_unit", "unit", units, lambda raw: parse_unit(raw, len(units)),
               default_unit)
restore_choice("explorer_sign", "sign", SIGNS, parse_sign, DEFAULT_SIGN)
restore_choice("explorer_alpha", "alpha", DEFAULT_ALPHAS, parse_alpha, DEFAULT_ALPHA)

col_unit, col_sign, col_alpha = st.columns([2, 1, 2])
unit = col_unit.selectbox("Unit (type a class name or index)", units, key="explorer_unit",
                          format_func=unit_text)
sign = col_sign.radio("Weights ablated", SIGNS, key="explorer_sign", horizontal=True)
alpha = col_alpha.select_slider("Ablation strength α", DEFAULT_ALPHAS, key="explorer_alpha",
                                format_func=lambda a: f"{a:.1f}")
remember_choice("explorer_unit", "unit", str(unit))
remember_choice("explorer_sign", "sign", sign)
remember_choice("explorer_alpha", "alpha", f"{alpha:g}")

if (st.session_state.get("_explorer_settings_for") != name  # a new model: its own defaults
        or "explorer_restarts" not in st.session_state):
    for field, value in default_settings(name).items():
        st.session_state[f"explorer_{field}"] = value
    st.session_state["_explorer_settings_for"] = name
with st.expander("Optimisation settings"):
    col_gen, col_r, col_g, col_seed = st.columns(4)
    generator = col_gen.selectbox("Generator", generator_choices(), key="explorer_generator")
    restarts = col_r.number_input("Restarts", min_value=1, max_value=64, step=1,
                                  key="explorer_restarts")
    generations = col_g.number_input("Generations", min_value=1, max_value=1000, step=10,
                                     key="explorer_generations")
    seed = col_seed.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1,
                                 key="explorer_seed")
    st.caption("efficientnet_lite0 defaults to 5 restarts × 60 generations of the Fourier "
               "generator, seed 0: the settings of the precomputed results for the paper's 11 "
               "default units, shown at once. Other models default to a CPU preview of 4 restarts "
               "× 20 generations; a unit is 21 conditions, so new settings take minutes on a CPU.")
try:
    settings = explorer_settings(generator=generator, restarts=restarts,
                                 generations=generations, seed=seed)
    found = stored_unit(name, unit, settings)
    job = unit_job(name, unit, settings)
except Exception as exc:  # the UI layer turns engine errors into messages
    show_error(exc, context="Cannot read the results")
    st.stop()

if job is not None and job.state == "done":
    found = {**results_by_key(job.result()), **found}
missing = N_CONDITIONS - len(found)
if missing and (job is None or job.state == "cancelled"):
    if st.button(f"Compute unit {unit} ({missing} conditions)", key="explorer_compute",
                 type="primary", help="Runs in the background; results are kept on disk."):
        job = submit_unit(name, unit, settings)
if missing and job is not None and job.is_active:
    show_job(job, key="explorer_job")
elif missing and job is not None and job.state == "failed":
    st.error(f"The computation failed: {job.error}")

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
    try:
        metrics, measured, metrics_job = unit_metrics(name, ordered)
    except Exception as exc:  # e.g. the similarity ensemble's weights are not here
        show_error(exc, context="Cannot set up the metrics")
    else:
        if measured is not None:
            show_unit_metrics(*measured, metrics.statuses, current=(sign, alpha))
        elif metrics_job is None or metrics_job.state == "cancelled":
            if st.button(f"Measure unit {unit}: similarity, objectness, spectra",
                         key="explorer_metrics_compute",
                         help=f"Measures the unit's images as a sweep does (ensemble "
                              f"{', '.join(METRIC_SPEC.ensemble)}) in the background; the rows "
                              "are kept on disk."):
                metrics_job = submit_unit_metrics(name, ordered)
        if measured is None and metrics_job is not None and metrics_job.is_active:
            show_job(metrics_job, key="explorer_metrics_job")
        elif measured is None and metrics_job is not None and metrics_job.state == "failed":
            st.error(f"Measuring the unit failed: {metrics_job.error}")
