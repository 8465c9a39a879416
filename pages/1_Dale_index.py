"""Dale index: how sign-consistent each layer's senders are, trained vs untrained, and the
readout's Dale index and sign ratio across the zoo (paper Fig 1A, Table 2)."""

from __future__ import annotations

import streamlit as st

from signseg_core.figures.plots import dale_vs_accuracy_figure, layer_dale_figure
from signseg_core.metrics.stats import correlation, describe_correlation
from signseg_core.models.imagenet import class_names
from signseg_core.signs import expected_untrained_dale_index
from signseg_ui.cached_models import require_model
from signseg_ui.dale_tables import dale_comparison, dale_layer_table, readout_table
from signseg_ui.error_display import show_error
from signseg_ui.export_widgets import export_panel
from signseg_ui.navigation import sidebar_nav
from signseg_ui.pickers import model_picker, picker_options
from signseg_ui.serving import hide_host_paths

st.set_page_config(page_title="Dale index · signseg", layout="wide")
sidebar_nav()
st.title("Dale index")
st.write(
    "For every channel that sends weights into a layer, the Dale index is the fraction of its "
    "outgoing weights that share the majority sign, max(p+, p−): 0.5 for a balanced channel, "
    "1 for a channel that only excites or only inhibits. Random networks sit at the untrained "
    "expectation; training pushes channels towards one sign."
)

name = model_picker(key="dale_model", needs_readout=False)
model = require_model(name)
st.caption(hide_host_paths(f"{model.name}: {model.description}. Weights: {model.weights_source}."))

left, right = st.columns([2, 1])
compare = left.toggle("Compare with the untrained network", key="dale_compare",
                      help="The same architecture at its random initialisation (seeded).")
seed = right.number_input("Seed of the untrained network", min_value=0, value=0, step=1,
                          key="dale_seed", disabled=not compare)

try:
    summary = dale_layer_table(name)
    comparison = dale_comparison(name, int(seed)) if compare else None
except Exception as exc:  # the UI layer turns engine errors into messages
    show_error(exc, context=f"Cannot compute the Dale index of {name}")
    st.stop()

st.subheader(f"Mean Dale index per layer, {name}")
layers_fig = layer_dale_figure(summary, comparison=comparison)
st.plotly_chart(layers_fig, key="dale_layers_fig")
export_panel(layers_fig, name=f"{name}_layer_dale", key="dale_layers_export")
for layer in model.absent_layers:
    st.info(f"{layer.name} ({layer.kind}, {layer.in_channels} → {layer.out_channels}): "
            f"{layer.note}.", icon="ℹ️")
if comparison is None:
    columns = ["layer", "kind", "in_channels", "out_channels", "groups", "n_outgoing",
               "mean_dale", "std_dale", "expected_untrained", "note"]
    st.dataframe(summary[columns], hide_index=True, key="dale_layers_table")
else:
    st.caption(f"ΔDI = trained − untrained (seed {seed}); positive where training made the "
               "layer's senders more sign-consistent.")
    st.dataframe(comparison, hide_index=True, key="dale_compare_table",
                 column_config={"delta_dale": st.column_config.NumberColumn("ΔDI",
                                                                            format="%+.4f")})

st.subheader("Readout Dale index against top-1 accuracy (Fig. 1A)")
readouts, problems = readout_table(picker_options())
for problem in problems:
    st.warning(problem)
scored = readouts.dropna(subset=["top1"])
n_classes = model.n_classes if model.has_readout else len(class_names())
if not model.has_readout:
    st.caption(f"{name} has no readout ({model.no_readout}), so it is not among these models.")
fit = correlation(scored.mean_dale, scored.top1)
acc_fig = dale_vs_accuracy_figure(
    scored, expected_untrained=expected_untrained_dale_index(n_classes), highlight=name,
    note=describe_correlation(fit, caveat=False))
st.plotly_chart(acc_fig, key="dale_vs_acc_fig")
export_panel(acc_fig, name="readout_dale_vs_top1", key="dale_vs_acc_export")
st.markdown(f"**Readout Dale index against top-1:** {describe_correlation(fit)}")
st.caption(f"Over the {len(scored)} models with weights on this machine and a published top-1 "
           f"({', '.join(scored.model) or 'none'}); with fewer than 3 no correlation is computed. "
           "Pearson's p assumes normal data; Spearman's is exact up to 8 models. The paper's "
           "Fig 1A spans 18 torchvision models (put their weights here to add them); "
           "`python -m signseg_core dale-vs-top1 --top1-csv FILE` also takes top-1 values from a "
           f"CSV. The dashed line is the expectation for an untrained {n_classes}-way readout.")

st.subheader("Positive / negative weight ratio of the readout (Table 2)")
st.write("Per output unit: the sum of its positive input weights over the sum of the absolute "
         "values of its negative ones; mean ± std over units.")
st.dataframe(readouts[["model", "readout", "ratio", "ratio_mean", "ratio_std", "mean_dale"]],
             hide_index=True, key="dale_ratio_table")
