"""The population's z-scored response to the images of a neuron model's ablation (Fig. 7 right).

The paper (Fig. 7 caption): "cortical population response to the images obtained from feature
visualization from ablation of model units, neurons were z-scored before computing the population
average. Plots show averages over 59 models [...], shaded regions are the 95% C.I. of the mean.
For all plots the positive ablation condition was statistically different to the control."
A.1: "we recorded the neuronal responses to the preferred images of the model [...] And analyzed
the responses of the biological neuron populations from V1, V4 and IT."

What is computed, for the images generated from one neuron model (the paper: 5 per condition)
and the population recorded while they were shown (every channel of the session):

1. :func:`zscore_responses`: ``z[i, j] = (r[i, j] - mean_j) / sd_j`` for image ``i`` and neuron
   ``j``, with ``mean_j``, ``sd_j`` (ddof 1) neuron ``j``'s mean and SD over the reference
   images: by default every image given (all conditions of the experiment), or the neuron's
   responses to other images (e.g. the natural diverseSet) passed as ``reference``.
2. :func:`population_response`: the population average of image ``i`` is the mean of ``z[i, :]``
   over the neurons shown it; a condition's value is the mean of its images' population averages,
   with a t-based 95 % CI over those images.
3. :func:`population_over_models`: per condition, the mean over models (sessions) of step 2, the
   t-based 95 % CI of that mean, and a paired t-test against the control over the same models.

Ambiguities and the choices made here (the paper does not say): the z-score reference (default:
the images of the experiment); the SD's ddof (1, as MATLAB's ``zscore``); averaging over neurons
before images (the "population average" of each image, then the condition mean); the test behind
"statistically different to the control" (paired t over models).

:func:`model_population_table` is the in-silico stand-in when no population was recorded: the
study's neuron models are the population, their predicted responses z-scored over their
predicted responses to the dataset's natural images.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from signseg_core.conditions import Condition, check_alpha
from signseg_core.metrics.stats import mean_ci
from signseg_core.models.zoo import ZooModel
from signseg_core.neurons.data import NeuronDataset
from signseg_core.neurons.readout import predicted_responses
from signseg_core.neurons.study import NeuronStudy, neuron_readout_model

__all__ = ["POPULATION_COLUMNS", "align_conditions", "model_population_table",
           "population_over_models", "population_response", "read_conditions",
           "recorded_population_table", "reference_columns", "zscore_responses"]

POPULATION_COLUMNS = ("condition", "sign", "alpha", "n_images", "n_neurons", "population_z",
                      "ci_low", "ci_high", "difference_from_control")
_SIGN_ORDER = {"control": 0, "positive": 1, "negative": 2}


def _as_responses(responses, what: str) -> np.ndarray:
    r = np.asarray(responses, dtype=np.float64)
    r = r[:, None] if r.ndim == 1 else r
    if r.ndim != 2 or r.shape[0] < 1 or r.shape[1] < 1:
        raise ValueError(f"{what} must be (n_images, n_neurons), got shape {np.shape(responses)}")
    if np.isinf(r).any():
        raise ValueError(f"{what} contain inf; use NaN for images a neuron was not shown")
    return r


def zscore_responses(responses, *, reference=None, ddof: int = 1) -> np.ndarray:
    """Each neuron's responses z-scored by its mean and SD over the reference images.

    Parameters
    ----------
    responses : array (n_images, n_neurons); NaN where a neuron was not shown an image.
    reference : array (n_ref, n_neurons) of the same neurons' responses to the reference images
        (NaN allowed); default ``responses`` itself.
    ddof : delta degrees of freedom of the SD (1: sample SD).

    Returns
    -------
    float64 array (n_images, n_neurons): ``(responses - mean) / sd`` per column; a neuron with
    fewer than ``ddof + 1`` reference responses or SD 0 is all NaN (it cannot be z-scored).
    """
    r = _as_responses(responses, "responses")
    ref = r if reference is None else _as_responses(reference, "reference responses")
    if ref.shape[1] != r.shape[1]:
        raise ValueError(f"reference has {ref.shape[1]} neurons, responses {r.shape[1]}")
    n = np.sum(~np.isnan(ref), axis=0)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN is the answer
        mean = np.nanmean(ref, axis=0)
        sd = np.nanstd(ref, axis=0, ddof=ddof)
    usable = (n > ddof) & (sd > 0)
    return np.where(usable, (r - mean) / np.where(usable, sd, 1.0), np.nan)


def _conditions(signs, alphas, n_images: int) -> list[Condition]:
    signs, alphas = list(signs), list(alphas)
    if len(signs) != n_images or len(alphas) != n_images:
        raise ValueError(f"give one sign and one alpha per image ({n_images}), got "
                         f"{len(signs)} and {len(alphas)}")
    out = []
    for sign, alpha in zip(signs, alphas):
        alpha = check_alpha(alpha)
        if sign == "control" or alpha == 0.0:
            out.append(Condition(0, "positive", 0.0))
        else:
            out.append(Condition(0, str(sign), alpha))
    return out


def population_response(responses, signs: Sequence[str], alphas: Sequence[float], *,
                        reference=None, ddof: int = 1,
                        confidence: float = 0.95) -> pd.DataFrame:
    """The z-scored population response per ablation condition, for one model's images.

    Parameters
    ----------
    responses : array (n_images, n_neurons) of the population's responses to the images.
    signs, alphas : per image, the condition it was generated under: ``"positive"``,
        ``"negative"`` or ``"control"``, and the ablation strength in [0, 1] (alpha 0 is the
        control whatever the sign).
    reference, ddof : see :func:`zscore_responses`.
    confidence : of the CI over images, in (0, 1).

    Returns
    -------
    DataFrame, one row per condition (control first, then positive and negative by alpha):
    ``condition`` ("control", "pos 0.5", ...), ``sign``, ``alpha``, ``n_images``, ``n_neurons``
    (neurons that could be z-scored), ``population_z`` (mean over the condition's images of the
    mean over neurons of z), ``ci_low``, ``ci_high`` (t-based, over images; NaN for one image) and
    ``difference_from_control`` (NaN without a control).
    """
    z = zscore_responses(responses, reference=reference, ddof=ddof)
    conds = _conditions(signs, alphas, z.shape[0])
    usable = ~np.all(np.isnan(z), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an image no usable neuron saw: NaN
        per_image = np.nanmean(z[:, usable], axis=1) if usable.any() else np.full(len(z), np.nan)
    rows = []
    for cond in sorted(set(conds), key=lambda c: (_SIGN_ORDER[c.key[1]], c.alpha)):
        values = per_image[[c == cond for c in conds]]
        mean, low, high = mean_ci(values, confidence=confidence)
        rows.append({"condition": cond.label, "sign": cond.key[1], "alpha": cond.alpha,
                     "n_images": int(np.sum(~np.isnan(values))), "n_neurons": int(usable.sum()),
                     "population_z": mean, "ci_low": low, "ci_high": high})
    table = pd.DataFrame(rows, columns=list(POPULATION_COLUMNS[:-1]))
    control = table.loc[table["sign"] == "control", "population_z"]
    table["difference_from_control"] = (table["population_z"] - float(control.iloc[0])
                                        if len(control) else np.nan)
    return table


def population_over_models(table: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Fig. 7's average over models: per condition, the mean over models of ``population_z``.

    Parameters
    ----------
    table : :func:`population_response` rows of several models stacked, with a ``model`` column.
    confidence : of the CI over models, in (0, 1).

    Returns
    -------
    DataFrame, one row per condition in :func:`population_response`'s order: ``condition, sign,
    alpha, n_models, population_z, ci_low, ci_high`` (t-based CI of the mean over models),
    ``p_vs_control`` (two-sided paired t-test, ``scipy.stats.ttest_rel``, of the condition
    against the control over the models that have both; NaN for the control and with fewer than
    2 pairs).
    """
    if "model" not in table.columns:
        raise ValueError(f"table needs a 'model' column; it has {list(table.columns)}")
    wide = table.pivot_table(index="model", columns="condition", values="population_z",
                             aggfunc="first", dropna=False)
    order = table.drop_duplicates("condition").sort_values(
        ["sign", "alpha"], key=lambda s: s.map(_SIGN_ORDER) if s.name == "sign" else s)
    rows = []
    for _, first in order.iterrows():
        values = wide[first["condition"]].to_numpy(dtype=float)
        mean, low, high = mean_ci(values, confidence=confidence)
        p = np.nan
        if first["sign"] != "control" and "control" in wide.columns:
            pairs = ~np.isnan(values) & ~np.isnan(wide["control"].to_numpy(dtype=float))
            if pairs.sum() >= 2:
                p = float(stats.ttest_rel(values[pairs], wide["control"].to_numpy()[pairs]).pvalue)
        rows.append({"condition": first["condition"], "sign": first["sign"],
                     "alpha": first["alpha"], "n_models": int(np.sum(~np.isnan(values))),
                     "population_z": mean, "ci_low": low, "ci_high": high, "p_vs_control": p})
    return pd.DataFrame(rows)


def read_conditions(path: str | Path) -> pd.DataFrame:
    """A conditions file: which ablation condition each generated image comes from.

    CSV with a header ``image, sign, alpha`` and optionally ``model`` (the neuron model whose
    ablation made it; default ``""``), header names matched case-insensitively; ``image`` as in
    the responses file. Raises ValueError naming the first bad line.
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = {(f or "").strip().lower(): f for f in reader.fieldnames or []}
        missing = [c for c in ("image", "sign", "alpha") if c not in fields]
        if missing:
            raise ValueError(f"{path}: line 1: missing column(s) {missing}; the header has "
                             f"{list(fields)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                sign = row[fields["sign"]].strip().lower()
                if sign not in _SIGN_ORDER:
                    raise ValueError(f"sign {sign!r} is not one of {list(_SIGN_ORDER)}")
                alpha = check_alpha(float(row[fields["alpha"]]))
            except (ValueError, TypeError, AttributeError) as exc:
                raise ValueError(f"{path}: line {line}: {exc}") from None
            rows.append({"image": row[fields["image"]].strip(), "sign": sign, "alpha": alpha,
                         "model": (row.get(fields.get("model", ""), "") or "").strip()})
    if not rows:
        raise ValueError(f"{path}: no conditions below the header")
    return pd.DataFrame(rows, columns=["image", "sign", "alpha", "model"])


def align_conditions(dataset: NeuronDataset, conditions: pd.DataFrame,
                     image_dir: str | Path) -> pd.DataFrame:
    """The rows of ``conditions`` (:func:`read_conditions`) in ``dataset.images`` order, matched
    by ``image_dir / image``; ValueError naming the images of the dataset that have none."""
    folder = Path(image_dir).expanduser()
    by_path = {(folder / name).as_posix(): i for i, name in enumerate(conditions["image"])}
    rows = [by_path.get(Path(p).as_posix()) for p in dataset.images]
    missing = [dataset.images[i].name for i, r in enumerate(rows) if r is None]
    if missing:
        raise ValueError(f"{len(missing)} image(s) of the responses have no condition in the "
                         f"conditions file, e.g. {missing[:5]}")
    return conditions.iloc[rows].reset_index(drop=True)


def reference_columns(dataset: NeuronDataset, reference: NeuronDataset) -> np.ndarray:
    """``reference.responses`` with its columns in ``dataset.neurons`` order (all NaN for a
    neuron the reference lacks): float64 (n_ref_images, n_neurons)."""
    index = {n: j for j, n in enumerate(reference.neurons)}
    out = np.full((reference.n_images, dataset.n_neurons), np.nan)
    for j, neuron in enumerate(dataset.neurons):
        if neuron in index:
            out[:, j] = reference.responses[:, index[neuron]]
    return out


def recorded_population_table(dataset: NeuronDataset, conditions: pd.DataFrame, *,
                              reference: NeuronDataset | None = None) -> pd.DataFrame:
    """Fig. 7 right from recordings: :func:`population_response` per model, stacked.

    ``dataset``: the population's responses to the generated images; ``conditions``:
    :func:`align_conditions` rows (``sign, alpha, model``); ``reference``: the same neurons'
    responses to natural images to z-score against (default: every image of ``dataset``, all
    models' together). Adds a ``model`` column.
    """
    # default: z-score over every image of the file (all models' conditions together)
    z_ref = (dataset.responses if reference is None
             else reference_columns(dataset, reference))
    parts = []
    for model in dict.fromkeys(conditions["model"]):
        rows = (conditions["model"] == model).to_numpy()
        part = population_response(dataset.responses[rows], conditions["sign"][rows],
                                   conditions["alpha"][rows], reference=z_ref)
        parts.append(part.assign(model=model))
    return pd.concat(parts, ignore_index=True)


def model_population_table(model: ZooModel, study: NeuronStudy, results, *,
                           batch_size: int = 64) -> pd.DataFrame:
    """In silico Fig. 7 right: the study's neuron models as the population.

    Every restart's best image of every condition in ``results`` (ConditionResults of one neuron
    model's ablation, e.g. :attr:`NeuronAblation.results`) is scored by all the study's neuron
    models; each model's predictions are z-scored over its predictions for the dataset's natural
    images; then :func:`population_response`. ``model`` is the network the study was fitted on.
    """
    results = list(results)
    if not results:
        raise ValueError("give the ConditionResults of at least one condition")
    images = np.concatenate([r.images for r in results])  # uint8 (N, H, W, 3)
    signs = [r.key.sign for r in results for _ in range(len(r.images))]
    alphas = [r.key.alpha for r in results for _ in range(len(r.images))]
    readouts = neuron_readout_model(model, study)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(readouts.device, torch.float32) / 255
    predicted = predicted_responses(readouts, x, batch_size=batch_size).double().cpu().numpy()
    natural = study.features.astype(np.float64) @ study.weights().T + np.array(
        [f.bias for f in study.fits])
    return population_response(predicted, signs, alphas, reference=natural)
