"""The Neuron models page's sections: the fit options, the neuron picker, and one function per
tab (fits, one neuron, its ablation, Dale-like features, diverseSet, localization); the data
section is :mod:`signseg_ui.neuron_dataset`'s.

Each section draws its widgets (stable ``neurons_*`` keys), reads cached results through
:mod:`signseg_ui.neurons` and keeps its own ``st.session_state`` bookkeeping; the page file only
lays the sections out. A dataset is ``(responses file, image folder or "")``, server paths shown
to visitors by name only unless the operator turned server paths on (:mod:`signseg_ui.serving`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from signseg_core.figures.neuron_plots import (
    dale_features_figure,
    fit_quality_figure,
    lasso_figure,
    neuron_ablation_figure,
    population_response_figure,
    prediction_scatter_figure,
    sign_ratio_figure,
    weight_distribution_figure,
)
from signseg_core.figures.plots import image_strip
from signseg_core.neurons.extrapolation import model_extrapolation_test
from signseg_core.neurons.fitting import PAPER_MIN_SD_RATIO
from signseg_core.neurons.localize import mask_overlay
from signseg_core.neurons.study import (
    NeuronStudy,
    dale_features_table,
    models_needed,
    neuron_ablation_table,
    top_agreement,
)
from signseg_core.optimize.results import ConditionResult, to_uint8
from signseg_core.sweeps.preview import iterations

from .error_display import show_error
from .evolution_settings import evolution_settings
from .explorer import results_by_key, stored_results, submit_unit, unit_job
from .export_widgets import export_panel
from .jobs_widget import job_panel
from .neurons import (
    ABLATION_DEFAULTS,
    ALPHA_GRID_LABELS,
    ALPHA_GRIDS,
    R2_COLUMNS,
    ablation_request,
    cached_diverse_set,
    cached_lasso,
    cached_localization,
    cached_population,
    default_neuron,
    diverse_sheet,
    images_by_response,
    neuron_label,
    strip_rows,
)
from .serving import server_path, server_paths_enabled
from .widget_choices import keep_choice

def fit_options() -> float:
    """The fits' feature filter ``min_sd_ratio`` (key ``neurons_min_sd_ratio``; default 0, the
    paper's), with a one-line caption of its effect."""
    value = st.number_input(
        "Leave out features with SD below this × the median SD (min_sd_ratio)", min_value=0.0,
        max_value=0.5, value=PAPER_MIN_SD_RATIO, step=0.001, format="%g",
        key="neurons_min_sd_ratio",
        help="Fit option of every neuron model on this page (fits, ablation, localization).")
    st.caption("0 (the paper's) keeps every feature that varies; e.g. 0.001 leaves out nearly "
               "silent features, whose 1/SD-sized weights can rule the sign ratio and the "
               "ablation order.")
    return float(value)


def neuron_picker(study: NeuronStudy) -> str:
    """A selectbox of the study's neurons (key ``neurons_neuron``), by default the best fit."""
    keep_choice("neurons_neuron", study.neurons, default_neuron(study))
    return st.selectbox("Neuron model", study.neurons, key="neurons_neuron",
                        format_func=lambda n: neuron_label(study, n),
                        help="Used by the Neuron, Ablation and Localization tabs; ★ marks the "
                             "best fit of each session.")


def chart(fig, *, key: str, name: str) -> None:
    """A Plotly figure (key ``neurons_<key>_fig``) with its export panel beneath."""
    st.plotly_chart(fig, key=f"neurons_{key}_fig")
    export_panel(fig, name=name, key=f"neurons_{key}_export")


# -- fits and one neuron -----------------------------------------------------------------------

def fits_tab(study: NeuronStudy, *, stem: str) -> None:
    """Fit quality of every neuron model, the table of fits, sign ratios and weights."""
    summary = study.summary()
    cols = st.columns(5)
    cols[0].metric("Neurons", summary["n_neurons"])
    cols[1].metric("Sessions", summary["n_sessions"])
    for col, key, what in ((cols[2], "best_r2_test", "determination"),
                           (cols[3], "best_r2_test_pearson", "squared Pearson")):
        col.metric(f"Test r² ({what}), best per session",
                   f"{summary[key + '_mean']:.2f} ± {summary[key + '_sd']:.2f}")
    cols[4].metric("Σ+ / |Σ−| weights, best per session",
                   f"{summary['ratio_mean']:.2f} ± {summary['ratio_sd']:.2f}")
    chart(fit_quality_figure(study.table, best=study.best), key="fit",
          name=f"{stem}_fit_quality")
    st.dataframe(study.table, hide_index=True, key="neurons_fits_table",
                 column_config=R2_COLUMNS)
    left, right = st.columns(2)
    with left:
        chart(sign_ratio_figure(study.table), key="ratio", name=f"{stem}_sign_ratio")
    with right:
        chart(weight_distribution_figure(study.weights(), names=study.neurons), key="weights",
              name=f"{stem}_weights")


def neuron_tab(study: NeuronStudy, name: str, data: tuple[str, str], neuron: str,
               responses: pd.DataFrame, *, stem: str) -> None:
    """Recorded against predicted responses, and on request the lasso path."""
    chart(prediction_scatter_figure(responses, title=f"{neuron}: recorded vs predicted"),
          key="scatter", name=f"{stem}_{neuron}_prediction")
    if not st.toggle("Lasso path: does allowing negative weights help? (a few seconds)",
                     key="neurons_lasso"):
        return
    try:
        fig = lasso_figure(cached_lasso(name, *data, neuron, min_sd_ratio=study.min_sd_ratio))
    except Exception as exc:  # the UI layer turns engine errors into messages
        show_error(exc, context="Cannot fit the lasso path")
        return
    chart(fig, key="lasso", name=f"{stem}_{neuron}_lasso")
    st.caption("Test r² of lasso fits with and without a non-negativity constraint, ±SD over 5 "
               "folds; the right panel is the gain of allowing negative weights.")


# -- the neuron model's ablation ---------------------------------------------------------------

def show_neuron_strip(results) -> np.ndarray:
    """Fig 6-7: per sign, the best image per alpha with the intact neuron model's predicted
    response above it (bold) and the ablated model's below. Returns the strip for export."""
    rows = strip_rows(results)
    for sign, row in rows.items():
        st.markdown(f"**{sign.capitalize()} weights ablated**" if sign != "control"
                    else "**Control**")
        columns = st.columns(max(len(row), 6))
        for result, column in zip(row, columns):
            b = result.best_index
            column.markdown(f"**{result.intact_scores[b]:.2f}**")
            column.image(result.best_image, caption=f"α = {result.key.alpha:g} · ablated "
                                                    f"{result.best_scores[b]:.2f}")
    return image_strip({f"{s} ablated": [
        (r.best_image, f"a={r.key.alpha:g} pred {r.intact_scores[r.best_index]:.1f}")
        for r in row] for s, row in rows.items()}, tile=160)


def ablation_tab(study: NeuronStudy, name: str, data: tuple[str, str], neuron: str, *,
                 stem: str) -> None:
    """The evolution settings and strengths, the neuron model's ablation job, and its results:
    stored, or of a finished job."""
    cols = st.columns(6)
    settings = evolution_settings(key="neurons", defaults=ABLATION_DEFAULTS, population=True,
                                  columns=cols[:5])
    grid = cols[5].radio("Ablation strengths", list(ALPHA_GRIDS), key="neurons_alphas",
                         format_func=ALPHA_GRID_LABELS.get)
    if settings is None:
        return
    try:
        request = ablation_request(name, *data, neuron, settings, ALPHA_GRIDS[grid],
                                   min_sd_ratio=study.min_sd_ratio)
        found, job = stored_results(request), unit_job(request)
    except Exception as exc:  # the UI layer turns engine errors into messages
        show_error(exc, context="Cannot set up the ablation")
        return
    n = len(request.conditions)
    st.caption(f"{n} conditions; a run scores about {request.images_to_score:,} "
               "images.")
    label = (f"{name} neuron {neuron}: {settings.generator} {settings.restarts} restarts × "
             f"{settings.generations} {iterations(settings)}")
    finished = job_panel(lambda: job, lambda: submit_unit(request, label=label),
                         key="neurons", button_key="neurons_ablate",
                         label=f"Compute neuron {neuron} ({n - len(found)} conditions)",
                         needed=len(found) < n, help="Runs in the background; kept on disk.")
    found = {**results_by_key(finished or []), **found}
    if found:
        show_ablation_results(study, neuron, list(found.values()), stem=stem)
        show_population(study, name, data, neuron, list(found.values()), stem=stem)


def show_ablation_results(study: NeuronStudy, neuron: str, results: list[ConditionResult], *,
                          stem: str) -> None:
    """The strip of best images, the predicted responses against α, and their table."""
    st.markdown("Bold: the intact neuron model's predicted response to the best image; below: "
                "the ablated model's.")
    strip = show_neuron_strip(results)
    export_panel(strip, name=f"{stem}_{neuron}_ablation_strip", key="neurons_strip_export")
    table = neuron_ablation_table(neuron, results)
    chart(neuron_ablation_figure(table, natural_max=study.natural_max_predicted(neuron)),
          key="ablation", name=f"{stem}_{neuron}_ablation")
    st.dataframe(table, hide_index=True, key="neurons_ablation_table")


def show_population(study: NeuronStudy, name: str, data: tuple[str, str], neuron: str,
                    results: list[ConditionResult], *, stem: str) -> None:
    """In silico Fig. 21 (left)'s test on the control's images and Fig. 7 (right) with the
    neuron models as the population, and what the recorded version needs."""
    control = [r for r in results if r.key.sign == "control"]
    if control:
        test = model_extrapolation_test(study, neuron, control[0].intact_scores)
        st.markdown(f"**Fig. 21 left, in silico**: the intact model's predicted response to its "
                    f"{test.n_a} preferred images vs its {test.n_b} natural images: "
                    f"{test.summary()}.")
    try:
        table = cached_population(name, *data, results, min_sd_ratio=study.min_sd_ratio)
    except Exception as exc:  # the UI layer turns engine errors into messages
        show_error(exc, context="Cannot score the images with the neuron models")
        return
    chart(population_response_figure(table), key="population", name=f"{stem}_{neuron}_population")
    st.caption(f"Fig. 7 right, in silico: the {len(study.neurons)} neuron models stand in for the "
               "recorded population. Each model's predicted response to every image above is "
               "z-scored over its predictions for the dataset's natural images, averaged over "
               "models per image, then over the condition's images (band: 95% CI over images). "
               "The paper's panel needs the recorded population's responses to these images: "
               "write them with `neurons ablate --out`, record, then run `neurons population`.")
    st.dataframe(table, hide_index=True, key="neurons_population_table")


# -- Dale-like features ------------------------------------------------------------------------

def dale_features_tab(study: NeuronStudy, *, stem: str) -> None:
    """Features the models weight with one sign (binomial test), or, when none passes, why not
    and the features with the most agreement."""
    which = st.radio("Neuron models", ["all", "best"], key="neurons_dale_which", horizontal=True,
                     format_func={"all": "all", "best": "best per session (the paper's)"}.get)
    neurons = study.neurons if which == "all" else study.best_neurons
    table = dale_features_table(study, neurons=neurons)
    chart(dale_features_figure(table), key="dale", name=f"{stem}_dale_features")
    consistent = table[table["label"] != "mixed"]
    if len(consistent):
        st.markdown(f"**{len(consistent)} features weighted with one sign by the models** "
                    "(binomial test, Bonferroni p < 0.05)")
        st.dataframe(consistent, hide_index=True, key="neurons_dale_table")
        return
    st.info(f"No feature passes the Bonferroni-corrected sign test: with {len(neurons)} neuron "
            f"models even unanimous signs give p = 2 · 0.5^{len(neurons)} · {study.n_features} "
            f"features ≥ 0.05; at least {models_needed(study.n_features)} models are needed. "
            "The features with the most agreement are below.")
    st.dataframe(top_agreement(table)[["feature", "n_positive", "n_negative", "agreement",
                                       "p_bonferroni", "mean_normalized_weight"]],
                 hide_index=True, key="neurons_dale_top")


# -- diverseSet and localization ---------------------------------------------------------------

def diverse_set_tab(study: NeuronStudy, name: str, data: tuple[str, str]) -> None:
    """k (by default the dataset's count, up to 12), an image folder where server paths are on
    (else the dataset's own images), and on request the diverse set as a contact sheet."""
    own = str(study.dataset.images[0].parent)
    if st.session_state.get("_neurons_diverse_for") != data:  # a new dataset: its own defaults
        st.session_state["neurons_diverse_folder"] = own
        st.session_state["neurons_diverse_k"] = min(12, study.dataset.n_images)
        st.session_state["_neurons_diverse_for"] = data
        st.session_state.pop("_neurons_diverse_request", None)
    left, right = st.columns([3, 1])
    folder = own
    if server_paths_enabled():
        folder = left.text_input("Image folder", key="neurons_diverse_folder")
    else:
        left.caption(f"From the folder of the dataset's {study.dataset.n_images} images.")
    k = right.number_input("k (images)", 1, 1000, step=1, key="neurons_diverse_k")
    if st.button("Choose the diverse set", key="neurons_diverse_run"):
        st.session_state["_neurons_diverse_request"] = (folder, int(k))
    request = st.session_state.get("_neurons_diverse_request")
    if request is None:
        return
    try:
        where = own if request[0] == own else str(server_path(request[0], what="image folder"))
        selection = cached_diverse_set(name, where, k=request[1])
        sheet = diverse_sheet(selection)
    except Exception as exc:  # the UI layer turns engine errors into messages
        show_error(exc, context="Cannot choose the diverse set")
        return
    st.image(sheet, caption=f"{selection.k} of {selection.n_candidates} images; "
                            f"{selection.n_components} PCA components explain "
                            f"{selection.explained_variance:.0%} of the variance")
    export_panel(sheet, name=f"{name}_diverse_set_{selection.k}", key="neurons_diverse_export")


def localization_tab(study: NeuronStudy, name: str, data: tuple[str, str], neuron: str,
                     responses: pd.DataFrame, *, stem: str) -> None:
    """An image (by recorded response), and on request the neuron model's mask on it and the
    effect of clearing the rest."""
    images = images_by_response(study, responses)
    keep_choice("neurons_loc_image", images, next(iter(images)))
    image_path = st.selectbox("Image (by recorded response, highest first)", list(images),
                              key="neurons_loc_image",
                              format_func=lambda p: f"{Path(p).name} · recorded {images[p]:.2f}")
    request = (data, name, study.min_sd_ratio, neuron, image_path)
    if st.button("Localize", key="neurons_localize"):
        st.session_state["_neurons_loc_request"] = request
    if st.session_state.get("_neurons_loc_request") != request:
        return
    try:
        image, loc, clearings = cached_localization(name, *data, neuron, image_path,
                                                    min_sd_ratio=study.min_sd_ratio)
    except Exception as exc:  # the UI layer turns engine errors into messages
        show_error(exc, context="Cannot localize")
        return
    test = model_extrapolation_test(study, neuron, [loc.intact])
    st.markdown(f"**Fig. 21 left, in silico**: the predicted response to this image vs to the "
                f"{test.n_b} natural images: {test.summary()}.")
    show_localization(image, loc, clearings, stem=f"{stem}_{neuron}_{Path(image_path).stem}")


def show_localization(image: np.ndarray, loc, clearings: dict, *, stem: str) -> None:
    """The mask outlined on the image and the image cleared to each fill, each exportable, then
    the mask's size and the responses before and after clearing."""
    panels = {"mask": mask_overlay(image, loc)}
    for fill, clearing in clearings.items():
        panels[f"cleared_{fill}"] = to_uint8(clearing.cleared_image[None])[0]
    for column, (label, picture) in zip(st.columns(len(panels)), panels.items()):
        with column:
            st.image(picture, caption=label.replace("_", " to "), width=256)
            export_panel(picture, name=f"{stem}_{label}", key=f"neurons_loc_{label}_export")
    st.caption(f"The mask covers {loc.area_fraction:.0%} of the image (disks of {loc.diameter} "
               f"px, σ = {loc.sigma:.1f} px: the paper's 50 and 30 px scaled from 256 px). "
               "Relative change > 0: clearing the background raised the predicted response.")
    if not clearings:
        st.info("No region: no perturbation lowered the predicted response on this image, so "
                "there is nothing to keep and nothing was cleared. Try an image the neuron "
                "responds to more.")
        return
    st.dataframe(pd.DataFrame([{"fill": f, "intact": c.intact, "cleared": c.cleared,
                                "relative_change": c.relative_change}
                               for f, c in clearings.items()]),
                 hide_index=True, key="neurons_clear_table")
