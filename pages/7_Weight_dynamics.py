"""Weight dynamics: how fast each channel's outgoing weights settle on their final direction
during training, against its Dale index (paper Fig 25)."""

from __future__ import annotations

import streamlit as st

from signseg_ui.dynamics_page import (
    computed,
    curves_section,
    scatter_section,
    settings_section,
    source_section,
    spread_section,
    summary_caption,
)
from signseg_ui.error_display import show_error
from signseg_ui.navigation import sidebar_nav

st.set_page_config(page_title="Weight dynamics · signseg", layout="wide")
sidebar_nav()
st.title("Weight dynamics")
st.write(
    "For every channel of every layer, the cosine similarity of its outgoing weights to the "
    "final checkpoint's, at each checkpoint of one training run; its convergence epoch is the "
    "first checkpoint at which that similarity reaches 90 % of the final one (which is 1). "
    "The paper (Fig 25, ResNet18 over 16 ImageNet epochs) found no correlation between "
    "convergence epoch and Dale index (Spearman −0.03, p = 0.064), and saw high-Dale channels "
    "mature within narrower time windows; here that claim is tested, not eyeballed."
)

st.subheader("Checkpoints")
source = source_section()
if source is None:
    st.info("Upload the checkpoints of one training run, or use the built-in demo.")
    st.stop()

threshold, arch, bins = settings_section()
try:
    result = computed(source, threshold, arch)
except Exception as exc:  # the UI layer turns engine errors into messages
    show_error(exc, context="Cannot read these checkpoints")
    st.stop()
if result is None:
    st.stop()

st.caption(summary_caption(result, source))
if source["demo"]:
    st.warning("This is the built-in demo: a tiny network trained for a few epochs on "
               "synthetic images, to show what the analysis computes. Its numbers say nothing "
               "about ResNet18 on ImageNet or about the paper's claim.")

st.subheader("Convergence epoch against Dale index")
scatter_section(result)
st.caption("Each dot is one channel (a layer's input channel, whose outgoing weights are the "
           "layer's weights from it); colour: its fraction of negative outgoing weights. "
           "Dots are jittered vertically by at most 0.15 epochs so stacked ones show.")

st.subheader("Spread of convergence epochs by Dale index")
spread_section(result, bins)
st.caption("Bins of equal width over the observed Dale indices. Brown–Forsythe asks whether "
           "the spreads differ at all; the permutation test asks whether the absolute "
           "deviation from the bin's median falls as the Dale index rises (one-sided). The "
           "Dale index also depends on how many weights a channel sends, so pooling layers of "
           "different widths mixes that in.")

st.subheader("Similarity to the final weights over training")
curves_section(result)

with st.expander("Every channel"):
    st.dataframe(result.table, hide_index=True, key="dynamics_table")
    st.download_button("Download the table (CSV)", result.table.to_csv(index=False),
                       file_name="weight_dynamics.csv", mime="text/csv",
                       key="dynamics_table_csv")
