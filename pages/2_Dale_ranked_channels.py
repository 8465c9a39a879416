"""Dale-ranked channels: a layer's senders from most positive to most negative, and what the
extreme ones respond to (gradient visualizations, like the paper's Fig 19)."""

from __future__ import annotations

import streamlit as st

from signseg_core.figures.plots import channel_ranking_figure
from signseg_core.optimize.gradvis import GradVisConfig, extreme_sender_channels
from signseg_core.sweeps.tasks import gradvis_key
from signseg_ui.cached_models import require_model
from signseg_ui.dale_tables import channel_ranking
from signseg_ui.error_display import show_error
from signseg_ui.export_widgets import export_panel
from signseg_ui.jobs_widget import job_panel
from signseg_ui.navigation import sidebar_nav
from signseg_ui.pickers import clamp_state, layer_picker, model_picker
from signseg_ui.sender_images import (
    existing_gradvis_job,
    show_sender_images,
    stored_gradvis,
    submit_gradvis,
)

st.set_page_config(page_title="Ranked channels · signseg", layout="wide")
sidebar_nav()
st.title("Dale-ranked channels")
st.write(
    "Each channel that feeds a layer sends it positive and negative weights. Ranked by the "
    "fraction that is positive minus the fraction that is negative, the top channels mostly "
    "excite the layer and the bottom ones mostly inhibit it; their gradient visualizations show "
    "what each kind of channel responds to."
)

name = model_picker(key="rank_model", needs_readout=False)
model = require_model(name)
layer = layer_picker(model, key="rank_layer")
try:
    ranking = channel_ranking(name, layer)
except Exception as exc:  # the UI layer turns engine errors into messages
    show_error(exc, context=f"Cannot rank the senders of {layer}")
    st.stop()

st.subheader(f"{len(ranking)} sender channels of {layer}, most positive first")
ranking_fig = channel_ranking_figure(ranking)
st.plotly_chart(ranking_fig, key="rank_fig")
export_panel(ranking_fig, name=f"{name}_{layer}_channel_ranking", key="rank_export")
st.dataframe(ranking[["rank", "channel", "sign", "dale_index", "frac_positive", "frac_negative",
                      "n_positive", "n_negative"]], hide_index=True, height=260, key="rank_table")

st.subheader("Gradient visualizations of the extreme senders")
defaults = GradVisConfig()
max_k = max(len(ranking) // 2, 1)
clamp_state("rank_k", 1, max_k)
col_k, col_steps, col_size = st.columns(3)
k = int(col_k.number_input("k: channels from each end", min_value=1, max_value=max_k,
                           value=min(3, max_k), step=1, key="rank_k"))
steps = int(col_steps.number_input("Optimisation steps", min_value=1, max_value=2048,
                                   value=defaults.steps, step=16, key="rank_steps"))
size = int(col_size.number_input("Image size (px)", min_value=32, max_value=512,
                                 value=defaults.image_size, step=16, key="rank_image_size"))
try:
    config = GradVisConfig(steps=steps, image_size=size)
    positive, negative = extreme_sender_channels(model.layer(layer), k=k)
except ValueError as exc:
    show_error(exc)
    st.stop()

request = gradvis_key(model, layer, positive + negative, config)
arrays = stored_gradvis(request)
finished = job_panel(
    lambda: existing_gradvis_job(request),
    lambda: submit_gradvis(model, layer, positive + negative, config),
    key="rank", button_key="rank_visualize", label=f"Visualize top/bottom {k}",
    needed=arrays is None, keep_button=True, failure="The visualization failed",
    help="Runs in the background; the result is kept on disk for later visits.",
    hint=f"Press the button to visualize channels {positive} (most positive) and {negative} "
         "(most negative).")
arrays = finished if arrays is None else arrays

if arrays is not None:
    st.caption(f"Input channels of {layer}, {config.steps} Adam steps on a {config.image_size}-px "
               "Fourier image with jitter, scale and rotation (Lucent-style).")
    strip = show_sender_images(arrays, ranking, k=k)
    export_panel(strip, name=f"{name}_{layer}_extreme_senders", key="rank_strip_export")
