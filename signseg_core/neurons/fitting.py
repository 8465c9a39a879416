"""Linear models of recorded neurons on a network's penultimate features (paper §4.6, A.1, A.4).

Each neuron is modelled by a one-component PLS regression from the features to its responses,
fitted on a seeded 80/20 split and scored on the held-out 20 % (:func:`fit_pls`) by two r²: the
coefficient of determination (``r2_test``) and the squared Pearson correlation
(``r2_test_pearson``); the best neuron of each session is kept (:func:`best_per_session`). A
fitted model is a plain readout row in the original feature space
(:attr:`NeuronFit.readout`, :mod:`signseg_core.neurons.readout`).

Dale's-law analyses: :func:`lasso_path` compares Lasso fits with and without a positivity
constraint over L1 penalties (Fig. 22), and :func:`dale_like_features` finds the features whose
weight sign is shared by (nearly) all neuron models (Fig. 23).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from signseg_core.metrics.stats import binomial_consistency
from signseg_core.neurons.readout import NeuronReadout

__all__ = ["NeuronFit", "best_per_session", "dale_like_features", "fit_pls", "fits_table",
           "lasso_path", "pearson_r2", "sign_ratios"]

#: The paper's fit keeps every feature that varies (A.1 names no feature selection).
PAPER_MIN_SD_RATIO = 0.0


def sign_ratios(weight) -> tuple[float, float]:
    """``(sum_ratio, count_ratio)`` of a weight vector's positive to negative weights.

    ``sum_ratio = sum(w[w > 0]) / |sum(w[w < 0])|`` is the ratio the paper reports (Fig. 20, A.4:
    "ratio of total positive to total negative weights", mean 1.17); ``count_ratio`` is
    ``#(w > 0) / #(w < 0)``. Zeros count for neither; with no negative weight a ratio is inf
    (NaN when there is no weight of either sign).
    """
    w = np.asarray(weight, dtype=np.float64).ravel()
    pos, neg = w[w > 0], w[w < 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        total = np.float64(pos.sum()) / np.float64(abs(neg.sum()))
        count = np.float64(pos.size) / np.float64(neg.size)
    return float(total), float(count)


@dataclass(frozen=True, eq=False)
class NeuronFit:
    """One neuron's PLS model and how well it predicts.

    weight, bias : the model in the original feature space: ``features @ weight + bias`` equals
        the PLS prediction. weight is float64 ``(in_features,)``.
    r2_train, r2_test : coefficient of determination ``1 - SS_res / SS_tot`` of the prediction
        (sklearn ``r2_score``) on the fitted and the held-out images; at most 1, negative when
        the model predicts worse than the split's own mean. NaN when that split's responses are
        constant.
    train_index, test_index : image indices (rows of the feature matrix) of each split.
    r2_train_pearson, r2_test_pearson : squared Pearson correlation of recorded and predicted
        responses on the same images (:func:`pearson_r2`), in [0, 1]; blind to the prediction's
        offset and scale. NaN when either side is constant on that split. On the training images
        it equals ``r2_train`` (a one-component PLS prediction is the least-squares line on its
        score); on held-out images it is at least ``r2_test``.
    """

    neuron: str
    weight: np.ndarray
    bias: float
    r2_train: float
    r2_test: float
    train_index: np.ndarray
    test_index: np.ndarray
    r2_train_pearson: float = float("nan")
    r2_test_pearson: float = float("nan")

    @property
    def readout(self) -> NeuronReadout:
        return NeuronReadout(self.weight, self.bias, self.neuron)


def _check_features(features) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"features must be (n_images, n_features) with n_images >= 2, got "
                         f"shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    return x


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    if n_test < 2 or n - n_test < 2:
        raise ValueError(f"{n} images with test_fraction={test_fraction} leave {n - n_test} to "
                         f"train and {n_test} to test; each needs at least 2")
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _r2(y, pred) -> float:
    from sklearn.metrics import r2_score  # deferred: sklearn takes ~1 s to import

    return float(r2_score(y, pred)) if np.ptp(y) > 0 else float("nan")


def pearson_r2(y, pred) -> float:
    """Squared Pearson correlation of ``y`` and ``pred`` (1-D, same length >= 2), in [0, 1].

    ``(sum(dy * dp))**2 / (sum(dy**2) * sum(dp**2))`` with ``dy = y - mean(y)``, ``dp = pred -
    mean(pred)``; NaN when either is constant (the correlation is undefined).
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(pred, dtype=np.float64).ravel()
    if y.shape != p.shape or y.size < 2:
        raise ValueError(f"y and pred must be 1-D of one length >= 2, got {y.shape}, {p.shape}")
    if np.ptp(y) == 0 or np.ptp(p) == 0:
        return float("nan")
    dy, dp = y - y.mean(), p - p.mean()
    return float(min(1.0, np.dot(dy, dp) ** 2 / (np.dot(dy, dy) * np.dot(dp, dp))))


def fit_pls(features, responses, *, test_fraction: float = 0.2, seed: int = 0,
            neurons: Sequence[str] | None = None,
            min_sd_ratio: float = PAPER_MIN_SD_RATIO) -> list[NeuronFit]:
    """One-component PLS regression of each neuron's responses on the features (paper A.1).

    For each neuron the images it was shown (non-NaN responses) are split by
    ``np.random.default_rng(seed).permutation``: neurons shown the same images get the same
    split. ``sklearn.cross_decomposition.PLSRegression(n_components=1)`` (which centres and
    scales the features) is fitted on the training part; its coefficients are mapped back to
    the original feature space, so ``features @ fit.weight + fit.bias == pls.predict(features)``.
    Each fit is scored by both r² of :class:`NeuronFit` (coefficient of determination and squared
    Pearson correlation) on each split.

    Parameters
    ----------
    features : array (n_images, n_features), finite; e.g. :func:`dataset_features`.
    responses : array (n_images, n_neurons) or (n_images,); NaN where not shown.
    test_fraction : held-out fraction in (0, 1); the paper uses 0.2.
    seed : seed of the split.
    neurons : names of the neurons; default ``"0", "1", ...``.
    min_sd_ratio : in [0, 1). Features exactly constant over the training images are always left
        out (weight 0: they carry no information, and PLS's 1/SD scaling is undefined). The
        default 0 keeps every other feature, as the paper does. A value > 0 also leaves out the
        features whose SD over the training images is below ``min_sd_ratio`` x the median SD of
        the varying features. PLS scales every feature to unit variance, so a ReLU feature that
        is nearly silent on the training images gets a weight of order 1/SD in feature units:
        huge, it can rule the positive/negative ratio, the ablation order (largest |w| first)
        and any image that happens to drive it; e.g. 1e-3 stops that.

    Returns
    -------
    list of NeuronFit, one per neuron, in column order.
    """
    x = _check_features(features)
    y = _check_responses(responses, x.shape[0])
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got "
                         f"{test_fraction!r}")
    check_min_sd_ratio(min_sd_ratio)
    names = [str(j) for j in range(y.shape[1])] if neurons is None else [str(n) for n in neurons]
    if len(names) != y.shape[1]:
        raise ValueError(f"got {len(names)} neuron names for {y.shape[1]} neurons")
    fits = []
    for j, name in enumerate(names):
        shown = np.flatnonzero(~np.isnan(y[:, j]))
        try:
            tr, te = _split(shown.size, float(test_fraction), seed)
        except ValueError as exc:
            raise ValueError(f"neuron {name!r}: {exc}") from None
        train, test = shown[tr], shown[te]
        w, b = _pls_readout(x[train], y[train, j], float(min_sd_ratio))
        (y_tr, p_tr), (y_te, p_te) = ((y[i, j], x[i] @ w + b) for i in (train, test))
        fits.append(NeuronFit(name, w, b, _r2(y_tr, p_tr), _r2(y_te, p_te), train, test,
                              pearson_r2(y_tr, p_tr), pearson_r2(y_te, p_te)))
    return fits


def check_min_sd_ratio(min_sd_ratio) -> float:
    """``min_sd_ratio`` as a float in [0, 1); ValueError naming the value otherwise."""
    if isinstance(min_sd_ratio, bool) or not isinstance(min_sd_ratio, (int, float, np.floating)) \
            or not 0.0 <= float(min_sd_ratio) < 1.0:
        raise ValueError(f"min_sd_ratio must be a number in [0, 1) (0 keeps every varying "
                         f"feature, as the paper), got {min_sd_ratio!r}")
    return float(min_sd_ratio)


def _check_responses(responses, n_images: int) -> np.ndarray:
    """``responses`` as float64 ``(n_images, n_neurons)`` (a 1-D one is one neuron); no inf."""
    y = np.asarray(responses, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if y.ndim != 2 or y.shape[0] != n_images:
        raise ValueError(f"responses must be (n_images,) or (n_images, n_neurons) with "
                         f"n_images = {n_images}, got shape {np.shape(responses)}")
    if np.isinf(y).any():
        raise ValueError("responses contain inf; use NaN for images a neuron was not shown")
    return y


def _pls_readout(x: np.ndarray, y: np.ndarray, min_sd_ratio: float) -> tuple[np.ndarray, float]:
    """Read-only weight ``(n_features,)`` and bias of a one-component PLS fit of ``y`` on the
    informative columns of ``x`` (0 elsewhere), in ``x``'s own units; the mean without any."""
    from sklearn.cross_decomposition import PLSRegression  # deferred: sklearn takes ~1 s

    keep = _informative(x, min_sd_ratio)
    if np.ptp(y) == 0 or not keep.any():  # nothing to regress on: the model is the mean
        w, b = np.zeros(x.shape[1]), float(y.mean())
    else:
        pls = PLSRegression(n_components=1)
        pls.fit(x[:, keep], y)
        w = np.zeros(x.shape[1])
        w[keep] = np.asarray(pls.coef_, dtype=np.float64).reshape(-1)
        b = float(np.ravel(pls.predict(np.zeros((1, int(keep.sum())))))[0])
    w.setflags(write=False)
    return w, b


def _informative(x: np.ndarray, min_sd_ratio: float) -> np.ndarray:
    """Mask of the columns of ``x`` that vary (max > min: an exact test, where a float SD of a
    constant column can come out 1e-17) and whose SD is at least ``min_sd_ratio`` x the median
    SD of the varying columns."""
    varying = np.ptp(x, axis=0) > 0
    if not varying.any() or min_sd_ratio == 0.0:
        return varying
    sd = x.std(axis=0)
    return varying & (sd >= min_sd_ratio * float(np.median(sd[varying])))


def fits_table(fits: Sequence[NeuronFit], *, dataset=None) -> pd.DataFrame:
    """One row per fit: ``neuron, session, area, monkey, r2_train, r2_test, r2_train_pearson,
    r2_test_pearson, n_train, n_test, bias, positive_negative_ratio,
    positive_negative_count_ratio, n_positive, n_negative``.

    ``r2_*`` are coefficients of determination, ``r2_*_pearson`` squared Pearson correlations
    (see :class:`NeuronFit`).

    ``dataset`` (a :class:`~signseg_core.neurons.data.NeuronDataset`) supplies the metadata
    columns, matched by neuron id; without it they are empty strings.
    """
    meta = {}
    if dataset is not None:
        meta = {n: (s, a, m) for n, s, a, m in zip(dataset.neurons, dataset.sessions,
                                                    dataset.areas, dataset.monkeys)}
    rows = []
    for f in fits:
        session, area, monkey = meta.get(f.neuron, ("", "", ""))
        ratio, count = sign_ratios(f.weight)
        rows.append({"neuron": f.neuron, "session": session, "area": area, "monkey": monkey,
                     "r2_train": f.r2_train, "r2_test": f.r2_test,
                     "r2_train_pearson": f.r2_train_pearson, "r2_test_pearson": f.r2_test_pearson,
                     "n_train": f.train_index.size, "n_test": f.test_index.size, "bias": f.bias,
                     "positive_negative_ratio": ratio, "positive_negative_count_ratio": count,
                     "n_positive": int((f.weight > 0).sum()),
                     "n_negative": int((f.weight < 0).sum())})
    return pd.DataFrame(rows)


def best_per_session(table: pd.DataFrame, *, score: str = "r2_test") -> pd.DataFrame:
    """The best-fitted neuron of each session (paper A.1: best test r² per session).

    ``score`` default: the coefficient of determination on the held-out images (the paper does
    not say which r²; ``"r2_test_pearson"`` picks by squared correlation instead).

    Rows whose ``score`` is NaN are never chosen; ties go to the earlier row. Returns the chosen
    rows of ``table`` (all columns), sorted by session, with a fresh index.
    """
    missing = [c for c in ("session", score) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {list(table.columns)}")
    valid = table[table[score].notna()]
    if valid.empty:
        return table.iloc[0:0].reset_index(drop=True)
    best = valid.groupby("session", sort=True)[score].idxmax()
    return table.loc[best.to_numpy()].reset_index(drop=True)


def lasso_path(features, response, *, penalties: Sequence[float],
               positive: bool | Sequence[bool] = (False, True), folds: int = 5,
               seed: int = 0) -> pd.DataFrame:
    """Lasso fits of one neuron with and without non-negative weights over L1 penalties (Fig. 22).

    Features are standardised on each training fold (a positive scale keeps every weight's
    sign, so the constraint is the same as on raw features); ``penalties`` are sklearn's
    ``Lasso(alpha=...)``. Folds: ``KFold(folds, shuffle=True, random_state=seed)`` over the
    images with a non-NaN response.

    Returns
    -------
    DataFrame, one row per (positive, penalty): ``positive, penalty, r2_train, r2_test`` (means
    over folds), ``r2_train_sd, r2_test_sd`` (SD over folds), ``gap`` (``r2_train - r2_test``),
    ``n_nonzero`` (mean number of non-zero weights), and, when both constraints were fitted,
    ``r2_test_gain`` = unconstrained minus positive test r² at that penalty (Fig. 22 right; the
    same value on both rows of a penalty).
    """
    from sklearn.linear_model import Lasso  # deferred: sklearn takes ~1 s to import
    from sklearn.model_selection import KFold  # deferred: sklearn takes ~1 s to import
    from sklearn.pipeline import make_pipeline  # deferred: sklearn takes ~1 s to import
    from sklearn.preprocessing import StandardScaler  # deferred: sklearn takes ~1 s to import

    x = _check_features(features)
    y = np.asarray(response, dtype=np.float64).ravel()
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"response must be (n_images,) = ({x.shape[0]},), got {y.shape}")
    keep = ~np.isnan(y)
    x, y = x[keep], y[keep]
    pens = [float(p) for p in penalties]
    if not pens or any(not p > 0 for p in pens):
        raise ValueError(f"penalties must be a non-empty list of numbers > 0, got {penalties!r}")
    constraints = [positive] if isinstance(positive, bool) else [bool(p) for p in positive]
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= y.size // 2:
        raise ValueError(f"folds must be an int from 2 to n_images // 2 = {y.size // 2}, got "
                         f"{folds!r}")
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(x))
    rows = []
    for pos in dict.fromkeys(constraints):
        for pen in pens:
            r2s = []
            for train, test in splits:
                model = make_pipeline(StandardScaler(),
                                      Lasso(alpha=pen, positive=pos, max_iter=20000))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # convergence at tiny penalties
                    model.fit(x[train], y[train])
                r2s.append((_r2(y[train], model.predict(x[train])),
                            _r2(y[test], model.predict(x[test])),
                            int(np.count_nonzero(model[-1].coef_))))
            a = np.array(r2s, dtype=float)
            rows.append({"positive": pos, "penalty": pen, "r2_train": a[:, 0].mean(),
                         "r2_test": a[:, 1].mean(), "r2_train_sd": a[:, 0].std(ddof=1),
                         "r2_test_sd": a[:, 1].std(ddof=1), "gap": (a[:, 0] - a[:, 1]).mean(),
                         "n_nonzero": a[:, 2].mean()})
    table = pd.DataFrame(rows)
    if table["positive"].nunique() == 2:
        test = table.pivot(index="penalty", columns="positive", values="r2_test")
        table["r2_test_gain"] = table["penalty"].map(test[False] - test[True])
    return table


def dale_like_features(weights, *, alpha: float = 0.05) -> pd.DataFrame:
    """Features that carry one weight sign across (nearly) all neuron models (Fig. 23).

    Parameters
    ----------
    weights : array (n_models, n_features), finite; one neuron model per row.
    alpha : family-wise error rate in (0, 1), Bonferroni over the features.

    Returns
    -------
    The table of :func:`signseg_core.metrics.stats.binomial_consistency` of ``sign(weights)`` (per
    feature ``n_positive``, ``n_negative``, ``p``, ``p_bonferroni``, ...) plus ``label`` in
    {"consistent-positive", "consistent-negative", "mixed"} and ``mean_normalized_weight``, the
    mean over models of the weight divided by its model's weight SD (as Fig. 20 normalises),
    useful to rank the consistent features.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.size == 0 or not np.isfinite(w).all():
        raise ValueError(f"weights must be a finite non-empty (n_models, n_features) array, got "
                         f"shape {w.shape}")
    table = binomial_consistency(np.sign(w).astype(int), alpha=alpha)
    table["label"] = np.where(table["consistently_positive"], "consistent-positive",
                              np.where(table["consistently_negative"], "consistent-negative",
                                       "mixed"))
    sd = w.std(axis=1, keepdims=True)
    table["mean_normalized_weight"] = (w / np.where(sd > 0, sd, 1.0)).mean(axis=0)
    return table
