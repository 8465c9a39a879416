"""The neuron-model workflow (paper §4.6, A.1, A.4): fit, pick, ablate, analyse, localize.

A page or a command calls these and draws what they return::

    dataset = load_neuron_data("responses.csv")
    study = fit_study(model, dataset)                      # features (stored) + PLS per neuron
    study.table, study.best                                # Fig 20/A.4 numbers, best per session
    ablation = ablate_neuron(model, study, "n03", settings=VisualizeSettings(generations=50))
    ablation.table                                         # predicted responses per condition
    dale_features_table(study), lasso_table(study, "n03")  # Figs 23 and 22

Every piece is built from the engine's blocks: :func:`~signseg_core.neurons.data.dataset_features`
(cached features), :func:`~signseg_core.neurons.fitting.fit_pls` and friends, and
:func:`~signseg_core.optimize.visualize.visualize` on a readout model whose single unit is the
neuron model, so stored results are keyed by that readout's fingerprint like any other unit's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from signseg_core.checks import check_int
from signseg_core.conditions import DEFAULT_ALPHAS, SIGNS
from signseg_core.models.zoo import ZooModel
from signseg_core.neurons.data import NeuronDataset, dataset_features
from signseg_core.neurons.fitting import (
    PAPER_MIN_SD_RATIO,
    NeuronFit,
    best_per_session,
    check_min_sd_ratio,
    dale_like_features,
    fit_pls,
    fits_table,
    lasso_path,
)
from signseg_core.neurons.localize import background_clearing_effect, perturbation_mask
from signseg_core.neurons.readout import as_readout_model
from signseg_core.optimize.request import VisualizeRequest, unit_conditions
from signseg_core.optimize.results import ConditionResult
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.visualize import run_request

__all__ = ["NeuronAblation", "NeuronStudy", "ablate_neuron", "dale_features_table", "fit_study",
           "lasso_table", "localize_and_clear", "models_needed", "neuron_ablation_table",
           "neuron_readout_model", "response_table", "top_agreement"]

ABLATION_COLUMNS = ("neuron", "condition", "sign", "alpha", "ablated_response",
                    "predicted_response", "predicted_response_mean", "restarts", "from_store")


@dataclass(frozen=True, eq=False)
class NeuronStudy:
    """A dataset, the features one model computes of its images, and a PLS model per neuron.

    Attributes
    ----------
    dataset : the recorded responses.
    model_name, model_fingerprint : the network whose penultimate features were used.
    features : float32 array (n_images, n_features), read-only; rows in ``dataset.images`` order.
    fits : tuple of NeuronFit, one per neuron, in ``dataset.neurons`` order.
    table : :func:`~signseg_core.neurons.fitting.fits_table` of the fits (one row per neuron).
    best : :func:`~signseg_core.neurons.fitting.best_per_session` of ``table``.
    test_fraction, seed : the split the fits used.
    min_sd_ratio : the fits' feature filter (:func:`~signseg_core.neurons.fitting.fit_pls`;
        0, the paper's, keeps every varying feature).

    The DataFrames are shared: treat them as read-only (``.copy()`` before editing).
    """

    dataset: NeuronDataset
    model_name: str
    model_fingerprint: str
    features: np.ndarray
    fits: tuple[NeuronFit, ...]
    table: pd.DataFrame
    best: pd.DataFrame
    test_fraction: float = 0.2
    seed: int = 0
    min_sd_ratio: float = PAPER_MIN_SD_RATIO

    def __post_init__(self) -> None:
        x = np.array(self.features, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != self.dataset.n_images:
            raise ValueError(f"features must be (n_images, n_features) with n_images = "
                             f"{self.dataset.n_images}, got shape {x.shape}")
        x.setflags(write=False)
        object.__setattr__(self, "features", x)
        fits = tuple(self.fits)
        names = tuple(f.neuron for f in fits)
        if names != self.dataset.neurons:
            raise ValueError(f"fits must be one per neuron in the dataset's order "
                             f"{list(self.dataset.neurons)[:10]}, got {list(names)[:10]}")
        object.__setattr__(self, "fits", fits)

    def __setstate__(self, state: dict) -> None:  # unpickled copies (st.cache_data) stay read-only
        self.__dict__.update(state)
        self.features.setflags(write=False)

    @property
    def neurons(self) -> tuple[str, ...]:
        return self.dataset.neurons

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    @property
    def best_neurons(self) -> tuple[str, ...]:
        """The best-fitted neuron of each session (sorted by session)."""
        return tuple(self.best["neuron"])

    def index(self, neuron: str) -> int:
        """Column of ``neuron`` in the dataset; ValueError listing the choices if unknown."""
        try:
            return self.neurons.index(str(neuron))
        except ValueError:
            raise ValueError(f"unknown neuron {neuron!r}; choose from "
                             f"{list(self.neurons)[:20]}") from None

    def fit(self, neuron: str) -> NeuronFit:
        return self.fits[self.index(neuron)]

    def natural_max_predicted(self, neuron: str) -> float:
        """The neuron model's largest predicted response to the dataset's images: the bar
        its preferred (generated) images are measured against."""
        fit = self.fit(neuron)
        return float(np.max(self.features.astype(np.float64) @ fit.weight + fit.bias))

    def weights(self, neurons: Sequence[str] | None = None) -> np.ndarray:
        """float64 array (n_chosen, n_features): the chosen neuron models' weights, in order."""
        chosen = self.neurons if neurons is None else [str(n) for n in neurons]
        if not chosen:
            raise ValueError("choose at least one neuron")
        return np.stack([self.fit(n).weight for n in chosen])

    def summary(self) -> dict:
        """The A.4 numbers: neurons, sessions, mean ± SD (ddof 1; 0 for one value) over the
        best neuron per session of its test r² (``best_r2_test_*``: coefficient of
        determination; ``best_r2_test_pearson_*``: squared Pearson correlation) and of its
        positive/negative weight ratio (``ratio_*``)."""
        best = self.best
        ratio = best["positive_negative_ratio"].replace([np.inf, -np.inf], np.nan)
        out = {"model": self.model_name, "n_images": self.dataset.n_images,
               "n_neurons": len(self.neurons), "n_sessions": len(best),
               "min_sd_ratio": self.min_sd_ratio}
        for key, values in (("best_r2_test", best["r2_test"]),
                            ("best_r2_test_pearson", best["r2_test_pearson"]), ("ratio", ratio)):
            out[f"{key}_mean"] = float(values.mean())
            out[f"{key}_sd"] = float(values.std(ddof=1)) if values.notna().sum() > 1 else 0.0
        return out


def fit_study(model: ZooModel, dataset: NeuronDataset, *, test_fraction: float = 0.2,
              seed: int = 0, min_sd_ratio: float = PAPER_MIN_SD_RATIO, store=None,
              batch_size: int = 32,
              progress: Callable[[int, int], None] | None = None) -> NeuronStudy:
    """Features of the dataset's images (from the store when there), then one PLS per neuron.

    Parameters
    ----------
    model : the network whose penultimate features model the neurons (read only).
    dataset : from :func:`~signseg_core.neurons.data.load_neuron_data`.
    test_fraction : held-out fraction in (0, 1) (paper: 0.2). seed : seed of the split, >= 0.
    min_sd_ratio : feature filter of :func:`~signseg_core.neurons.fitting.fit_pls`; 0 (the
        paper's) keeps every varying feature.
    store : ResultStore for the features (they do not depend on the fit's options, so one entry
        serves every split and filter); None for the default store, False for none.
    batch_size : images per trunk pass. progress : ``progress(images_done, n_images)``.
    """
    check_int("seed", seed, low=0)
    min_sd_ratio = check_min_sd_ratio(min_sd_ratio)
    features = dataset_features(model, dataset, batch_size=batch_size, store=store,
                                progress=progress)
    fits = fit_pls(features, dataset.responses, test_fraction=test_fraction, seed=seed,
                   neurons=dataset.neurons, min_sd_ratio=min_sd_ratio)
    table = fits_table(fits, dataset=dataset)
    return NeuronStudy(dataset, model.name, model.fingerprint, features, tuple(fits),
                       table, best_per_session(table), float(test_fraction), int(seed),
                       min_sd_ratio)


def _check_model(model: ZooModel, study: NeuronStudy) -> None:
    if model.fingerprint != study.model_fingerprint:
        raise ValueError(f"the study was fitted on the features of {study.model_name} "
                         f"(fingerprint {study.model_fingerprint[:12]}), not on {model.name} "
                         f"({model.fingerprint[:12]}); fit it again with this model")


def neuron_readout_model(model: ZooModel, study: NeuronStudy,
                         neurons: Sequence[str] | None = None) -> ZooModel:
    """A ZooModel sharing ``model``'s trunk whose readout unit ``i`` is neuron model ``i``.

    ``neurons`` default: all, in dataset order; class names are the neuron ids. ``model`` must be
    the network the study was fitted with (same fingerprint). One neuron gives the name
    ``"<model>+neuron:<id>"``, several ``"<model>+<k> neurons"``.
    """
    _check_model(model, study)
    chosen = list(study.neurons) if neurons is None else [str(n) for n in neurons]
    readouts = [study.fit(n).readout for n in chosen]
    name = (f"{model.name}+neuron:{chosen[0]}" if len(chosen) == 1
            else f"{model.name}+{len(chosen)} neurons")
    return as_readout_model(model, readouts, name=name)


def response_table(study: NeuronStudy, neuron: str | None = None) -> pd.DataFrame:
    """Recorded vs predicted responses to the dataset's images (Fig. 21 left).

    One row per (image, neuron) shown: ``image`` (file name), ``neuron``, ``response``,
    ``predicted`` (``features @ weight + bias``), ``split`` ("train" or "test").
    """
    chosen = study.neurons if neuron is None else (study.neurons[study.index(neuron)],)
    names = np.array(study.dataset.image_names)
    parts = []
    for n in chosen:
        j, fit = study.index(n), study.fit(n)
        split = np.full(study.dataset.n_images, "", dtype=object)
        split[fit.train_index], split[fit.test_index] = "train", "test"
        shown = ~np.isnan(study.dataset.responses[:, j])
        predicted = study.features.astype(np.float64) @ fit.weight + fit.bias
        parts.append(pd.DataFrame({"image": names[shown], "neuron": n,
                                   "response": study.dataset.responses[shown, j],
                                   "predicted": predicted[shown], "split": split[shown]}))
    return pd.concat(parts, ignore_index=True)


# -- ablation -------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class NeuronAblation:
    """Preferred images of one neuron model under sign ablation (Figs 6-7).

    results : one ConditionResult per condition (unit 0 of the single-neuron readout model).
    table : :func:`neuron_ablation_table` of them.
    natural_max_predicted : the model's largest predicted response to the dataset's images, a
        reference line: preferred images that beat it are extrapolations (Fig. 21 left).
    """

    neuron: str
    model_name: str
    results: tuple[ConditionResult, ...]
    table: pd.DataFrame
    natural_max_predicted: float

    @property
    def cancelled(self) -> bool:
        """True when ``should_stop`` cut the evolution short (nothing was stored)."""
        return any(r.cancelled for r in self.results)

    def result(self, sign: str, alpha: float) -> ConditionResult:
        """The result of one condition (``alpha = 0``: the control, whatever ``sign``)."""
        for r in self.results:
            if np.isclose(r.key.alpha, alpha) and (r.key.sign == sign or r.key.sign == "control"):
                return r
        have = [(r.key.sign, r.key.alpha) for r in self.results]
        raise ValueError(f"no condition ({sign!r}, {alpha!r}); have {have}")


def neuron_ablation_table(neuron: str, results: Sequence[ConditionResult]) -> pd.DataFrame:
    """One row per condition, control first, then by sign and alpha.

    Columns: ``neuron, condition`` (e.g. "control", "pos 0.3"), ``sign`` ("control",
    "positive", "negative"), ``alpha``, ``ablated_response`` (the ablated model's response to its
    best image), ``predicted_response`` (the intact neuron model's response to that image),
    ``predicted_response_mean`` (over restarts' best images), ``restarts``, ``from_store``.
    """
    order = {"control": 0, "positive": 1, "negative": 2}
    rows = []
    for r in sorted(results, key=lambda r: (order[r.key.sign], r.key.alpha)):
        b = r.best_index
        rows.append({"neuron": str(neuron), "condition": r.condition.label, "sign": r.key.sign,
                     "alpha": r.key.alpha, "ablated_response": float(r.best_scores[b]),
                     "predicted_response": float(r.intact_scores[b]),
                     "predicted_response_mean": float(np.nanmean(r.intact_scores)),
                     "restarts": len(r.best_scores), "from_store": r.from_store})
    return pd.DataFrame(rows, columns=list(ABLATION_COLUMNS))


def neuron_request(model: ZooModel, study: NeuronStudy, neuron: str,
                   settings: VisualizeSettings = VisualizeSettings(), *,
                   alphas: Sequence[float] = DEFAULT_ALPHAS, signs: Sequence[str] = SIGNS,
                   generator=None) -> VisualizeRequest:
    """The request of a neuron model's ablation: unit 0 of ``neuron_readout_model(model, study,
    [neuron])``, its control plus every sign × strength (stored under that readout's
    fingerprint). ``generator`` default: the settings' one, built on the model's device."""
    readout_model = neuron_readout_model(model, study, [study.fit(neuron).neuron])
    conditions = unit_conditions(0, signs=signs, alphas=alphas)
    return VisualizeRequest.build(readout_model, conditions, settings, generator=generator)


def ablate_neuron(model: ZooModel, study: NeuronStudy, neuron: str, *,
                  settings: VisualizeSettings = VisualizeSettings(),
                  alphas: Sequence[float] = DEFAULT_ALPHAS, signs: Sequence[str] = SIGNS,
                  generator=None, store=None, batch_size: int | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> NeuronAblation:
    """Preferred images of a neuron model with its positive or negative inputs ablated.

    Runs :func:`~signseg_core.optimize.visualize.run_request` of :func:`neuron_request`;
    ``store``, ``batch_size``, ``progress`` and ``should_stop`` are passed to it.
    """
    fit = study.fit(neuron)
    request = neuron_request(model, study, neuron, settings, alphas=alphas, signs=signs,
                             generator=generator)
    results = run_request(request, store=store, batch_size=batch_size, progress=progress,
                          should_stop=should_stop)
    natural = study.natural_max_predicted(neuron)
    return NeuronAblation(fit.neuron, request.model.name, tuple(results),
                          neuron_ablation_table(fit.neuron, results), natural)


# -- Dale's-law analyses --------------------------------------------------------------------------

def dale_features_table(study: NeuronStudy, *, alpha: float = 0.05,
                        neurons: Sequence[str] | None = None) -> pd.DataFrame:
    """Features weighted with one sign by (nearly) all the neuron models (Fig. 23).

    :func:`~signseg_core.neurons.fitting.dale_like_features` of the chosen models' weights
    (default all; the paper used the best model per session, ``neurons=study.best_neurons``)
    plus ``agreement = max(n_positive, n_negative) / n`` in [0.5, 1] (NaN when ``n = 0``).
    With ``m`` models no feature can reach ``p_bonferroni < alpha`` unless
    ``2 * 0.5**m * n_features < alpha`` (e.g. m >= 16 for 1280 features).
    """
    table = dale_like_features(study.weights(neurons), alpha=alpha)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["agreement"] = np.maximum(table["n_positive"], table["n_negative"]) / table["n"]
    return table


def models_needed(n_features: int, *, alpha: float = 0.05) -> int:
    """Fewest neuron models with which a feature can pass the Bonferroni sign test:
    the smallest ``m`` with ``2 * 0.5**m * n_features < alpha``."""
    return math.floor(math.log2(2 * n_features / alpha)) + 1


def top_agreement(table: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """The ``n`` features of a :func:`dale_features_table` that most models weight with one
    sign, strongest mean weight first (what to look at when none is significant)."""
    order = table.assign(_w=table["mean_normalized_weight"].abs())
    order = order.sort_values(["agreement", "n", "_w"], ascending=False, kind="stable")
    return order.drop(columns="_w").head(n)


def lasso_table(study: NeuronStudy, neuron: str, *, penalties: Sequence[float] | None = None,
                folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Lasso fits of one neuron with and without non-negative weights (Fig. 22).

    ``penalties`` default: ``SD(response) * logspace(-2.5, -0.5, 5)``, from a nearly free fit
    to one that keeps few features (the penalty acts on standardised features, so its scale is
    the response's). See :func:`~signseg_core.neurons.fitting.lasso_path` for the columns.
    """
    y = study.dataset.responses[:, study.index(neuron)]
    if penalties is None:
        sd = float(np.nanstd(y))
        penalties = tuple(float(p) for p in (sd if sd > 0 else 1.0) * np.logspace(-2.5, -0.5, 5))
    return lasso_path(study.features, y, penalties=penalties, positive=(False, True),
                      folds=folds, seed=seed)


# -- localization ---------------------------------------------------------------------------------

def localize_and_clear(score_fn, image, *, fill="gray", n_disks: int = 30,
                       diameter: int | None = None, sigma: float | None = None,
                       threshold: float = 0.5, seed: int = 0):
    """Localize what drives ``score_fn`` in ``image``, then clear the rest (Figs 21 and 24).

    :func:`~signseg_core.neurons.localize.perturbation_mask` followed by
    :func:`~signseg_core.neurons.localize.background_clearing_effect` with its mask. ``score_fn``
    maps images ``(N, 3, H, W)`` in [0, 1] to responses ``(N,)`` (e.g. ``lambda x: m(x)[:, unit]``).

    Returns
    -------
    (LocalizationResult, BackgroundClearing or None): None when the mask is empty (no
    perturbation lowered the response), since clearing would then paint the whole image.
    """
    loc = perturbation_mask(score_fn, image, n_disks=n_disks, diameter=diameter, sigma=sigma,
                            threshold=threshold, seed=seed, warn_empty=False)
    if not loc.mask.any():
        return loc, None
    return loc, background_clearing_effect(score_fn, image, loc.mask, fill=fill)
