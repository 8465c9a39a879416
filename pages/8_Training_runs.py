"""Training runs: loss, top-1 and top-5 per epoch of the ReLU and Tanh networks trained with
``python -m signseg_core train`` (paper section 4.3), read from the runs folder."""

from __future__ import annotations

import streamlit as st

from signseg_core.figures.training_plots import final_epoch_table, training_curves_figure
from signseg_ui.error_display import show_error
from signseg_ui.export_widgets import export_panel
from signseg_ui.navigation import sidebar_nav
from signseg_ui.training_page import (
    START_COMMANDS,
    describe_folder,
    load_runs,
    run_picker,
    runs_folder_picker,
)

st.set_page_config(page_title="Training runs · signseg", layout="wide")
sidebar_nav()
st.title("Training runs")
st.write(
    "The paper's ReLU and Tanh ResNet18s (section 4.3, Fig 3B–C) were trained for 16 ImageNet "
    "epochs. Runs of `python -m signseg_core train` record every epoch's loss and top-1/top-5; "
    "this page draws them, training solid and validation dashed. Nothing is trained from here."
)

root = runs_folder_picker(key="training_root")
try:
    runs = load_runs(root)
except Exception as exc:  # the UI layer turns engine errors into messages
    show_error(exc, context="Cannot read the training runs")
    st.stop()
st.caption(describe_folder(root, len(runs)))

if runs:
    chosen = run_picker(runs, key="training_runs")
    if chosen:
        fig = training_curves_figure(chosen)
        st.plotly_chart(fig, key="training_curves_fig")
        export_panel(fig, name="training_curves", key="training_curves_export")
        st.dataframe(final_epoch_table(chosen), hide_index=True, key="training_final_table")
else:
    st.info("No training runs here yet. Start one in a terminal (below); its epochs appear "
            "here as they finish.")

st.subheader("Start a run")
st.write("In a terminal, with the ImageNet folder in ImageFolder layout (`train/<wnid>/*.JPEG`, "
         "`val/<wnid>/*`); `docs/training.md` says what it needs, and how to continue or run "
         "it on a cluster:")
st.code("\n".join(START_COMMANDS), language="bash")
