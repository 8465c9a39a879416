"""Neuron models: recorded neurons modelled as linear readouts of a network's penultimate features,
their sign ratios, their preferred images under sign ablation, Dale-like features, a diverse
stimulus set and feature localization (paper §4.6, A.1, A.4; Figs 6-7, 9, 20-24)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from signseg_core.figures.neuron_plots import (
    dale_features_figure,
    fit_quality_figure,
    lasso_figure,
    neuron_ablation_figure,
    prediction_scatter_figure,
    sign_ratio_figure,
    weight_distribution_figure,
)
from signseg_core.neurons.study import (
    dale_features_table,
    models_needed,
    neuron_ablation_table,
    response_table,
    top_agreement,
)
from signseg_core.optimize.settings import VisualizeSettings
from signseg_ui.common import model_picker, require_model, show_error, show_job, sidebar_nav
from signseg_ui.explorer import generator_choices
from signseg_ui.export_widgets import export_panel
from signseg_ui.neurons import (
    ABLATION_DEFAULTS,
    ALPHA_GRID_LABELS,
    ALPHA_GRIDS,
    QUERY_DATA,
    SESSION_DATA,
    ablation_job,
    ablation_request,
    cached_diverse_set,
    cached_lasso,
    cached_localization,
    cached_study,
    choose_data,
    default_neuron,
    demo_dataset,
    diverse_sheet,
    images_by_response,
    images_per_run,
    neuron_label,
    show_localization,
    show_neuron_strip,
    stored_ablation,
    submit_ablation,
)

st.set_page_config(page_title="Neuron models · signseg", layout="wide")
sidebar_nav()
st.title("Neuron models")
st.write(
    "Model each recorded neuron as a linear readout of a network's penultimate features (PLS, "
    "80/20 split), then ask the paper's questions of these neuron models: how their positive and "
    "negative weights balance, what their preferred images become when either sign is ablated, "
    "and which features every neuron weights with the same sign."
)

# -- 1. data -----------------------------------------------------------------------------------
st.subheader("Data")
if SESSION_DATA not in st.session_state and st.query_params.get(QUERY_DATA):
    st.session_state["neurons_path"] = st.query_params[QUERY_DATA]
    st.session_state["_neurons_data_error"] = choose_data(st.query_params[QUERY_DATA])
if st.button("Use the demo dataset", key="neurons_demo",
             help="Synthetic neurons planted on EfficientNet-Lite0 features of 120 images; "
                  "written once into the cache folder."):
    bar = st.progress(0.0, text="Writing the demo dataset…")
    try:
        csv = demo_dataset(progress=lambda d, n: bar.progress(d / n, text=f"features {d}/{n}"))
    except Exception as exc:  # the UI layer turns engine errors into messages
        show_error(exc, context="Cannot write the demo dataset")
        st.stop()
    bar.empty()
    st.session_state["neurons_path"], st.session_state["neurons_images"] = str(csv), ""
    st.session_state["_neurons_data_error"] = choose_data(str(csv))
chosen = st.session_state.get(SESSION_DATA)
if chosen is not None:  # a revisit: the widgets show the dataset in use
    st.session_state.setdefault("neurons_path", chosen[0])
    st.session_state.setdefault("neurons_images", chosen[1])
col_path, col_images = st.columns(2)
col_path.text_input("Responses file (.csv or .npz)", key="neurons_path",
                    help="CSV: one row per (image, neuron) with columns image, neuron, response "
                         "and optionally session, area, monkey. NPZ: responses (n_images, "
                         "n_neurons) and images.")
col_images.text_input("Images folder", key="neurons_images",
                      placeholder="default: the responses file's folder")
if st.button("Load", key="neurons_load", type="primary"):
    st.session_state["_neurons_data_error"] = choose_data(
        st.session_state.get("neurons_path", ""), st.session_state.get("neurons_images", ""))
if st.session_state.get("_neurons_data_error"):
    st.error(st.session_state["_neurons_data_error"])
data = st.session_state.get(SESSION_DATA)
if data is None:
    st.info("Load a responses file with its images, or use the demo dataset.")
    st.stop()

# -- 2. fits -----------------------------------------------------------------------------------
name = model_picker(key="neurons_model", label="Feature model")
model = require_model(name)
try:
    study = cached_study(name, *data)
except Exception as exc:  # the UI layer turns engine errors into messages
    show_error(exc, context="Cannot fit the neuron models")
    st.stop()
stem = f"{name}_{Path(data[0]).stem}"
st.caption(f"{data[0]}: {study.dataset.n_images} images, {len(study.neurons)} neurons; "
           f"{study.n_features} features of {name}.")

if st.session_state.get("neurons_neuron") not in study.neurons:
    st.session_state["neurons_neuron"] = default_neuron(study)
neuron = st.selectbox("Neuron model", study.neurons, key="neurons_neuron",
                      format_func=lambda n: neuron_label(study, n),
                      help="Used by the Neuron, Ablation and Localization tabs; ★ marks the best "
                           "fit of each session.")

responses = response_table(study, neuron)
fits, one, ablation, dale, diverse, localization = st.tabs(
    ["Fits", "Neuron", "Ablation", "Dale-like features", "diverseSet", "Localization"],
    key="neurons_tab", on_change="rerun")  # tracked: a rerun keeps the tab open

with fits:
    summary = study.summary()
    cols = st.columns(4)
    cols[0].metric("Neurons", summary["n_neurons"])
    cols[1].metric("Sessions", summary["n_sessions"])
    cols[2].metric("Test r², best per session",
                   f"{summary['best_r2_test_mean']:.2f} ± {summary['best_r2_test_sd']:.2f}")
    cols[3].metric("Σ+ / |Σ−| weights, best per session",
                   f"{summary['ratio_mean']:.2f} ± {summary['ratio_sd']:.2f}")
    fig = fit_quality_figure(study.table, best=study.best)
    st.plotly_chart(fig, key="neurons_fit_fig")
    export_panel(fig, name=f"{stem}_fit_quality", key="neurons_fit_export")
    st.dataframe(study.table, hide_index=True, key="neurons_fits_table")
    left, right = st.columns(2)
    with left:
        fig = sign_ratio_figure(study.table)
        st.plotly_chart(fig, key="neurons_ratio_fig")
        export_panel(fig, name=f"{stem}_sign_ratio", key="neurons_ratio_export")
    with right:
        fig = weight_distribution_figure(study.weights(), names=study.neurons)
        st.plotly_chart(fig, key="neurons_weights_fig")
        export_panel(fig, name=f"{stem}_weights", key="neurons_weights_export")
    st.caption("A ratio above 1: the model's positive weights outweigh its negative ones (the "
               "paper's AlexNet models of V1, V4 and pIT neurons: 1.17 ± 0.17, Fig. 20). In the "
               "weight histograms each model's weights are divided by their SD.")

with one:
    fig = prediction_scatter_figure(responses, title=f"{neuron}: recorded vs predicted")
    st.plotly_chart(fig, key="neurons_scatter_fig")
    export_panel(fig, name=f"{stem}_{neuron}_prediction", key="neurons_scatter_export")
    if st.toggle("Lasso path: does allowing negative weights help? (a few seconds)",
                 key="neurons_lasso"):
        try:
            fig = lasso_figure(cached_lasso(name, *data, neuron))
        except Exception as exc:
            show_error(exc, context="Cannot fit the lasso path")
        else:
            st.plotly_chart(fig, key="neurons_lasso_fig")
            export_panel(fig, name=f"{stem}_{neuron}_lasso", key="neurons_lasso_export")
            st.caption("Test r² of lasso fits with and without a non-negativity constraint, ±SD "
                       "over 5 folds; the right panel is the gain of allowing negative weights.")

with ablation:
    for field, value in ABLATION_DEFAULTS.items():
        st.session_state.setdefault(f"neurons_{field}", value)
    cols = st.columns(6)
    generator = cols[0].selectbox("Generator", generator_choices(), key="neurons_generator")
    generations = cols[1].number_input("Generations", 1, 1000, step=5, key="neurons_generations")
    restarts = cols[2].number_input("Restarts", 1, 64, step=1, key="neurons_restarts")
    popsize = cols[3].number_input("Population (0: automatic)", 0, 256, step=2,
                                   key="neurons_popsize")
    seed = cols[4].number_input("Seed", 0, 2**31 - 1, step=1, key="neurons_seed")
    grid = cols[5].radio("Ablation strengths", list(ALPHA_GRIDS), key="neurons_alphas",
                         format_func=ALPHA_GRID_LABELS.get)
    try:
        settings = VisualizeSettings(generator=generator, generations=int(generations),
                                     restarts=int(restarts), seed=int(seed),
                                     popsize=int(popsize) or None)
        request = ablation_request(name, *data, neuron, settings, ALPHA_GRIDS[grid])
        found, job = stored_ablation(request), ablation_job(request, settings)
    except Exception as exc:
        show_error(exc, context="Cannot set up the ablation")
    else:
        if job is not None and job.state == "done":
            found = {**{r.condition.key: r for r in job.result()}, **found}
        missing = len(request[2]) - len(found)
        st.caption(f"{len(request[2])} conditions; a run scores about "
                   f"{images_per_run(request, settings):,} images.")
        if missing and (job is None or job.state == "cancelled"):
            if st.button(f"Compute neuron {neuron} ({missing} conditions)", type="primary",
                         key="neurons_ablate", help="Runs in the background; kept on disk."):
                job = submit_ablation(request, settings, label=(
                    f"{name} neuron {neuron}: {generator} {restarts} restarts × {generations} "
                    f"generations"))
        if missing and job is not None and job.is_active:
            show_job(job, key="neurons_job")
        elif missing and job is not None and job.state == "failed":
            st.error(f"The computation failed: {job.error}")
        if found:
            st.markdown("Bold: the intact neuron model's predicted response to the best image; "
                        "below: the ablated model's.")
            strip = show_neuron_strip(list(found.values()))
            export_panel(strip, name=f"{stem}_{neuron}_ablation_strip",
                         key="neurons_strip_export")
            table = neuron_ablation_table(neuron, list(found.values()))
            fig = neuron_ablation_figure(table, natural_max=study.natural_max_predicted(neuron))
            st.plotly_chart(fig, key="neurons_ablation_fig")
            export_panel(fig, name=f"{stem}_{neuron}_ablation", key="neurons_ablation_export")
            st.dataframe(table, hide_index=True, key="neurons_ablation_table")

with dale:
    which = st.radio("Neuron models", ["all", "best"], key="neurons_dale_which", horizontal=True,
                     format_func={"all": "all", "best": "best per session (the paper's)"}.get)
    chosen_neurons = study.neurons if which == "all" else study.best_neurons
    table = dale_features_table(study, neurons=chosen_neurons)
    fig = dale_features_figure(table)
    st.plotly_chart(fig, key="neurons_dale_fig")
    export_panel(fig, name=f"{stem}_dale_features", key="neurons_dale_export")
    consistent = table[table["label"] != "mixed"]
    if len(consistent):
        st.markdown(f"**{len(consistent)} features weighted with one sign by the models** "
                    "(binomial test, Bonferroni p < 0.05)")
        st.dataframe(consistent, hide_index=True, key="neurons_dale_table")
    else:
        need = models_needed(study.n_features)
        st.info(f"No feature passes the Bonferroni-corrected sign test: with "
                f"{len(chosen_neurons)} neuron models even unanimous signs give p = "
                f"2 · 0.5^{len(chosen_neurons)} · {study.n_features} features ≥ 0.05; at least "
                f"{need} models are needed. The features with the most agreement are below.")
        st.dataframe(top_agreement(table)[["feature", "n_positive", "n_negative", "agreement",
                                            "p_bonferroni", "mean_normalized_weight"]],
                     hide_index=True, key="neurons_dale_top")

with diverse:
    st.write("*diverseSet* (A.1, Fig. 9): the images nearest the k-means centers of a model's "
             "outputs (PCA), a stimulus set spanning what the model distinguishes. The paper "
             "used AlexNet's outputs on ImageNet; this uses the feature model above.")
    folder_default = str(study.dataset.images[0].parent)
    if st.session_state.get("_neurons_diverse_for") != data:
        st.session_state["neurons_diverse_folder"] = folder_default
        st.session_state["neurons_diverse_k"] = min(12, study.dataset.n_images)
        st.session_state["_neurons_diverse_for"] = data
        st.session_state.pop("_neurons_diverse_request", None)
    left, right = st.columns([3, 1])
    folder = left.text_input("Image folder", key="neurons_diverse_folder")
    k = right.number_input("k (images)", 1, 1000, step=1, key="neurons_diverse_k")
    if st.button("Choose the diverse set", key="neurons_diverse_run"):
        st.session_state["_neurons_diverse_request"] = (folder, int(k))
    request = st.session_state.get("_neurons_diverse_request")
    if request is not None:
        try:
            selection = cached_diverse_set(name, request[0], k=request[1])
            sheet = diverse_sheet(selection)
        except Exception as exc:
            show_error(exc, context="Cannot choose the diverse set")
        else:
            st.image(sheet, caption=f"{selection.k} of {selection.n_candidates} images; "
                                    f"{selection.n_components} PCA components explain "
                                    f"{selection.explained_variance:.0%} of the variance")
            export_panel(sheet, name=f"{name}_diverse_set_{selection.k}",
                         key="neurons_diverse_export")

with localization:
    st.write("Feature localization (A.1, Figs 21, 24): shuffle the pixels of 30 random disks, "
             "weight each by the response drop it causes, smooth and threshold; then clear "
             "everything outside the mask and see whether the neuron model responds more.")
    images = images_by_response(study, responses)
    if st.session_state.get("neurons_loc_image") not in images:
        st.session_state["neurons_loc_image"] = next(iter(images))
    image_path = st.selectbox("Image (by recorded response, highest first)", list(images),
                              key="neurons_loc_image",
                              format_func=lambda p: f"{Path(p).name} · recorded {images[p]:.2f}")
    if st.button("Localize", key="neurons_localize"):
        st.session_state["_neurons_loc_request"] = (data, name, neuron, image_path)
    if st.session_state.get("_neurons_loc_request") == (data, name, neuron, image_path):
        try:
            image, loc, clearings = cached_localization(name, *data, neuron, image_path)
        except Exception as exc:
            show_error(exc, context="Cannot localize")
        else:
            show_localization(image, loc, clearings,
                              stem=f"{stem}_{neuron}_{Path(image_path).stem}")
