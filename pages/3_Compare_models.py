"""Compare models: a family side by side — readout Dale index, representational change upon
ablation against ε or model from stored sweeps, and Spearman ρ against ε (paper Fig 5, Table 1)."""

from __future__ import annotations

import streamlit as st

from signseg_core.figures.compare import (
    change_vs_model_figure,
    family_curves_figure,
    readout_dale_figure,
)
from signseg_core.models.imagenet import NUM_CLASSES
from signseg_core.signs import expected_untrained_dale_index
from signseg_core.sweeps.tables import METRIC_LABELS, change_table, spearman_table, table1
from signseg_ui.compare import (
    SESSION,
    family_picker,
    forget_stored,
    metric_picker,
    metric_setup_note,
    placed_models,
    placement_picker,
    show_coverage,
    split_by_weights,
    stored_sweep,
    sweep_settings,
)
from signseg_ui.dale_tables import readout_table
from signseg_ui.error_display import show_error
from signseg_ui.export_widgets import export_panel
from signseg_ui.navigation import sidebar_nav
from signseg_ui.widget_choices import keep_choice

st.set_page_config(page_title="Compare models · signseg", layout="wide")
sidebar_nav()
st.title("Compare models")
st.write(
    "Set a family of models side by side: the robust ResNet50s trained at growing L∞ ε, a "
    "network with its ReLUs replaced by Tanh, or any set from the zoo. Readout Dale indices need "
    "only the weights; the change of the preferred images under ablation comes from stored "
    "sweeps, computed once with the command shown for what is missing."
)

models = family_picker(key="cmp")
if not models:
    st.info("Choose at least one model.")
    st.stop()

st.subheader("Readout Dale index")
present, absent = split_by_weights(models)
readouts, problems = readout_table(present)
if absent:
    st.warning("No weights on this machine (details below): "
               + ", ".join(name for name, _ in absent) + ".")
for problem in problems:
    st.warning(problem)
if len(readouts):
    dale_fig = readout_dale_figure(
        readouts, expected_untrained=expected_untrained_dale_index(NUM_CLASSES),
        title="Readout mean Dale index")
    st.plotly_chart(dale_fig, key="cmp_dale_fig")
    export_panel(dale_fig, name="readout_dale_by_model", key="cmp_dale_export")
    st.dataframe(readouts[["model", "top1", "mean_dale", "ratio", "readout"]], hide_index=True,
                 key="cmp_dale_table")

st.subheader("Representational change upon ablation")
spec = sweep_settings(models)
if spec is None:
    st.stop()
if st.button("Re-read the store", key="cmp_reread",
             help="Pick up results stored since this page last looked."):
    forget_stored()
try:
    stored = stored_sweep(spec)
except Exception as exc:  # the UI layer turns engine errors into messages
    show_error(exc, context="Cannot read the stored sweeps")
    st.stop()
show_coverage(stored, spec, key="cmp")
if not stored.found:
    st.info("No stored sweep results for these models at these settings yet.")
    st.stop()

col_metric, col_show, col_alpha = st.columns([2, 2, 3])
metric = metric_picker(key="cmp_metric", container=col_metric)
show = col_show.radio("Show", ("delta", "mean"), horizontal=True, key="cmp_show",
                      persist_state=SESSION,
                      format_func={"delta": "change from control", "mean": "value"}.get)
alphas = sorted(set(stored.table.alpha) - {0.0})
keep_choice("cmp_alpha", alphas, alphas[-1])
alpha = col_alpha.select_slider("Ablation strength α", alphas, key="cmp_alpha",
                                format_func=lambda a: f"{a:g}")
label = METRIC_LABELS[metric] + (": ablated − control" if show == "delta" else "")
changes = change_table(stored.table, value=metric, order=models)

change_fig = change_vs_model_figure(changes, alpha=alpha, value=show, y_title=label)
st.plotly_chart(change_fig, key="cmp_change_fig")
export_panel(change_fig, name=f"{metric}_{show}_vs_model_alpha{alpha:g}", key="cmp_change_export")
curves_fig = family_curves_figure(changes, value=show, y_title=label)
st.plotly_chart(curves_fig, key="cmp_curves_fig")
export_panel(curves_fig, name=f"{metric}_{show}_vs_alpha", key="cmp_curves_export")
st.caption("Mean over units (each the mean of its images), 95% t-intervals over units. "
           + metric_setup_note(stored.statuses))

st.subheader("Spearman ρ against robustness (Table 1)")
positions = placement_picker(models, key="cmp_against")
placed = placed_models(stored.found, positions)
if len(placed) < 3:
    st.info(f"Spearman ρ needs stored results of at least 3 models with a place; "
            f"{len(placed)} here ({', '.join(placed) or 'none'}). Table 1 uses the robust "
            "ResNet50 family.")
else:
    rho = spearman_table(stored.table, against=positions, value=metric, change=show == "delta")
    st.dataframe(table1(rho), hide_index=True, key="cmp_table1")
    st.caption(f"Per (sign, α): Spearman ρ over {len(placed)} models × units of "
               f"{label.lower()} against {'ε' if positions is None else 'list position'}; "
               "negative ρ: ablation changes the representation more further along.")
    with st.expander("ρ, p and counts"):
        st.dataframe(rho, hide_index=True, key="cmp_rho")
