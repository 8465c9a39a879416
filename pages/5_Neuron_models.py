"""Neuron models: recorded neurons modelled as linear readouts of a network's penultimate features,
their sign ratios, their preferred images under sign ablation, Dale-like features, a diverse
stimulus set and feature localization (paper §4.6, A.1, A.4; Figs 6-7, 9, 20-24)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from signseg_core.neurons.study import response_table
from signseg_ui.cached_models import require_model
from signseg_ui.error_display import show_error
from signseg_ui.navigation import sidebar_nav
from signseg_ui.neuron_dataset import dataset_section
from signseg_ui.neuron_page import (
    ablation_tab,
    dale_features_tab,
    diverse_set_tab,
    fit_options,
    fits_tab,
    localization_tab,
    neuron_picker,
    neuron_tab,
)
from signseg_ui.neurons import cached_study, dataset_name
from signseg_ui.pickers import model_picker

st.set_page_config(page_title="Neuron models · signseg", layout="wide")
sidebar_nav()
st.title("Neuron models")
st.write(
    "Model each recorded neuron as a linear readout of a network's penultimate features (PLS, "
    "80/20 split), then ask the paper's questions of these neuron models: how their positive and "
    "negative weights balance, what their preferred images become when either sign is ablated, "
    "and which features every neuron weights with the same sign."
)

st.subheader("Data")
data = dataset_section()
if data is None:
    st.info("Upload a responses file with its images, or use the demo dataset.")
    st.stop()

name = model_picker(key="neurons_model", label="Feature model")
model = require_model(name)
min_sd_ratio = fit_options()
try:
    study = cached_study(name, *data, min_sd_ratio=min_sd_ratio)
except Exception as exc:  # the UI layer turns engine errors into messages
    show_error(exc, context="Cannot fit the neuron models")
    st.stop()
stem = f"{name}_{Path(data[0]).stem}"
st.caption(f"{dataset_name()}: {study.dataset.n_images} images, {len(study.neurons)} neurons; "
           f"{study.n_features} features of {name}.")

neuron = neuron_picker(study)
responses = response_table(study, neuron)
fits, one, ablation, dale, diverse, localization = st.tabs(
    ["Fits", "Neuron", "Ablation", "Dale-like features", "diverseSet", "Localization"],
    key="neurons_tab", on_change="rerun")  # tracked: a rerun keeps the tab open

with fits:
    fits_tab(study, stem=stem)
    st.caption("Test r² is the coefficient of determination (1 − SS_res/SS_tot, can be "
               "negative) on the held-out 20 %; the squared Pearson correlation is shown beside "
               "it (the paper's best per session: 0.27 ± 0.10, r² kind unstated). A ratio above "
               "1: the model's positive weights outweigh its negative ones (the paper's AlexNet "
               "models of V1, V4 and pIT neurons: 1.17 ± 0.17, Fig. 20). In the weight "
               "histograms each model's weights are divided by their SD.")

with one:
    neuron_tab(study, name, data, neuron, responses, stem=stem)

with ablation:
    ablation_tab(study, name, data, neuron, stem=stem)

with dale:
    dale_features_tab(study, stem=stem)

with diverse:
    st.write("*diverseSet* (A.1, Fig. 9): the images nearest the k-means centers of a model's "
             "outputs (PCA), a stimulus set spanning what the model distinguishes. The paper "
             "used AlexNet's outputs on ImageNet; this uses the feature model above.")
    diverse_set_tab(study, name, data)

with localization:
    st.write("Feature localization (A.1, Figs 21, 24): shuffle the pixels of 30 random disks, "
             "weight each by the response drop it causes, smooth and threshold; then clear "
             "everything outside the mask and see whether the neuron model responds more.")
    localization_tab(study, name, data, neuron, responses, stem=stem)
