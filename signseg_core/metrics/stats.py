"""The statistics behind the paper's figures and tables, in one place.

* :func:`mean_ci` — t-based confidence interval of a mean over units (Figs. 2D/E, 11: "error bars
  are 95% confidence intervals over units, where each unit response is the mean of its 20
  visualizations"); :func:`bootstrap_ci` for any other statistic.
* :func:`spearman` and :func:`robustness_trend` — Table 1, the rank correlation of representational
  change upon ablation against the L∞ ε of the robust ResNet50 family.
* :func:`binomial_consistency` — Fig. 23, which features carry one weight sign in (nearly) every
  neuron model, by a binomial test against p = 0.5 with Bonferroni correction.
* :func:`paired_difference` — the mean of ``a - b`` with its CI (positive vs negative ablation).
* :func:`correlation` and :func:`describe_correlation` — Fig. 1A, Pearson r and Spearman ρ (exact
  permutation p for n <= 8) of the readout's Dale index against top-1 across models.

Conventions: NaNs mark missing values and are dropped (pairwise where two arrays are paired);
a statistic that cannot be computed (too few values, constant input) is reported as NaN instead of
raising, except where the caller asked for exactly one number (:func:`spearman` raises for fewer
than 3 points).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

__all__ = [
    "binomial_consistency",
    "bootstrap_ci",
    "correlation",
    "describe_correlation",
    "mean_ci",
    "paired_difference",
    "robustness_trend",
    "spearman",
]

_TRANSFORMS = ("identity", "one_minus")


def _check_confidence(confidence: float) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    return confidence


def mean_ci(values, *, confidence: float = 0.95, axis: int | None = None):
    """Mean and t-based confidence interval of the mean, ignoring NaNs.

    ``mean ± t_{(1+c)/2, n-1} · s / sqrt(n)`` with ``s`` the sample standard deviation (ddof=1)
    and ``n`` the number of non-NaN values.

    Parameters
    ----------
    values : array-like of real numbers, any shape (e.g. ``(n_units,)`` unit means).
    confidence : coverage of the interval, in (0, 1).
    axis : reduce along this axis; ``None`` reduces over all values.

    Returns
    -------
    (mean, low, high) : floats when ``axis`` is None, else arrays of the reduced shape. Where
        fewer than two values remain, ``low`` and ``high`` are NaN (``mean`` is NaN with none).
        Identical values give a zero-width interval.
    """
    confidence = _check_confidence(confidence)
    x = np.asarray(values, dtype=float)
    n = np.sum(~np.isnan(x), axis=axis)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN is the answer
        mean = np.nanmean(x, axis=axis)
        sd = np.nanstd(x, axis=axis, ddof=1)
        half = _st.t.ppf(0.5 + confidence / 2.0, np.maximum(n - 1, 1)) * sd / np.sqrt(n)
    half = np.where(n >= 2, half, np.nan)
    low, high = mean - half, mean + half
    if axis is None:
        return float(mean), float(low), float(high)
    return mean, low, high


def bootstrap_ci(
    values,
    *,
    statistic: Callable = np.mean,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """A statistic of 1-D ``values`` with a percentile bootstrap confidence interval.

    Parameters
    ----------
    values : array-like ``(n,)`` of real numbers; NaNs are dropped first.
    statistic : function of an array to a number. If it accepts ``axis=`` (as NumPy reductions
        do) all resamples are evaluated in one call, otherwise one call per resample.
    n_boot : number of resamples, >= 1.
    confidence : coverage of the interval, in (0, 1).
    seed : seed of the ``np.random.default_rng`` that draws the resamples.

    Returns
    -------
    (value, low, high) : ``statistic(values)`` and the ``(1-c)/2`` and ``(1+c)/2`` percentiles of
        its resampled values; ``low``/``high`` are NaN when fewer than two values remain.
    """
    confidence = _check_confidence(confidence)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    x = np.asarray(values, dtype=float).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    value = float(statistic(x))
    if x.size < 2:
        return value, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, x.size, size=(int(n_boot), x.size))]
    try:
        boot = np.asarray(statistic(samples, axis=1), dtype=float)
    except TypeError:
        boot = np.array([statistic(s) for s in samples], dtype=float)
    lo, hi = np.quantile(boot, [0.5 - confidence / 2.0, 0.5 + confidence / 2.0])
    return value, float(lo), float(hi)


def complete_pairs(x, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as flat float arrays with every pair holding a NaN dropped; ValueError
    (naming ``what`` needs them) when their lengths differ."""
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{what} needs paired arrays; got lengths {x.size} and {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def spearman(x, y) -> tuple[float, float]:
    """Spearman rank correlation of two paired 1-D arrays, with its two-sided p-value.

    Pairs in which either value is NaN are dropped. A constant ``x`` or ``y`` has no ranks to
    correlate: it returns ``(nan, nan)`` without warning.

    Raises
    ------
    ValueError
        If the lengths differ, or fewer than 3 complete pairs remain.
    """
    x, y = complete_pairs(x, y, "spearman")
    if x.size < 3:
        raise ValueError(f"spearman needs at least 3 complete (non-NaN) pairs, got {x.size}")
    if np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan"), float("nan")
    res = _st.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def robustness_trend(
    table: pd.DataFrame,
    *,
    value: str = "similarity",
    eps: str = "eps",
    by: Sequence[str] = ("sign", "alpha"),
    transform: str = "identity",
) -> pd.DataFrame:
    """Table 1: per (sign, alpha), Spearman ρ of representational change against robustness ε.

    Each row of ``table`` is one measurement (typically one unit of one model of the robust
    ResNet50 family, ``eps`` its L∞ training budget; ε = 0 is the vanilla network). All rows of a
    group are correlated together, so ties in ``eps`` (several units per model) are handled by
    Spearman's average ranks.

    Sign convention: with ``transform="identity"`` the ``value`` column is correlated as it is.
    Passing the cosine similarity to control (or its difference from control, Fig. 5 bottom) this
    reproduces Table 1's convention, where *negative* ρ means ablation changes the representation
    more as robustness grows. ``transform="one_minus"`` correlates ``1 - value`` instead (change
    rather than similarity); since Spearman ρ depends only on ranks this flips the sign of ρ and
    leaves p unchanged.

    Parameters
    ----------
    table : DataFrame with the columns ``value``, ``eps`` and every column of ``by``.
    value : column of the measurement (e.g. similarity to control, in [-1, 1]).
    eps : column of the robustness (numeric, >= 0).
    by : grouping columns; one output row per group.
    transform : ``"identity"`` or ``"one_minus"``.

    Returns
    -------
    DataFrame with the ``by`` columns then ``rho``, ``p``, ``n`` (complete rows used) and
    ``n_models`` (distinct ``eps`` values among them), sorted by ``by``. A group with fewer than 3
    complete rows, or with a constant ``value`` or ``eps``, gets ``rho = p = NaN``.
    """
    if transform not in _TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; choose from {list(_TRANSFORMS)}")
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [value, eps, *by] if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {list(table.columns)}")
    rows = []
    for key, group in table.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        v = pd.to_numeric(group[value], errors="raise").to_numpy(dtype=float)
        e = pd.to_numeric(group[eps], errors="raise").to_numpy(dtype=float)
        if transform == "one_minus":
            v = 1.0 - v
        ok = ~(np.isnan(v) | np.isnan(e))
        rho, p = (spearman(e[ok], v[ok]) if ok.sum() >= 3 else (float("nan"), float("nan")))
        rows.append(
            {**dict(zip(by, key)), "rho": rho, "p": p, "n": int(ok.sum()),
             "n_models": int(np.unique(e[ok]).size)}
        )
    return pd.DataFrame(rows, columns=[*by, "rho", "p", "n", "n_models"])


def binomial_consistency(signs, *, alpha: float = 0.05) -> pd.DataFrame:
    """Fig. 23: features whose weight sign agrees across models beyond chance.

    For each feature (column) the models with a positive and with a negative weight are counted;
    **zeros are excluded** (a zero weight is neither sign, so it neither supports nor contradicts
    consistency, and ``n = n_positive + n_negative``). The count is tested against a fair coin with
    a two-sided exact binomial test (identical to ``scipy.stats.binomtest(k, n, 0.5)``) and the
    p-values are Bonferroni-corrected over *all* ``n_features`` columns, as the paper does for the
    4096 features of AlexNet's fc7. A feature with ``n = 0`` gets ``p = 1``.

    For scale: 50 of 56 models sharing a sign gives two-sided p = 1.02e-9; the paper's quoted
    5.09e-10 equals the one-sided tail P(X >= 50), exactly half.

    Parameters
    ----------
    signs : array ``(n_models, n_features)`` with entries in {-1, 0, +1} (pass
        ``np.sign(weights)`` for raw weights).
    alpha : family-wise error rate, in (0, 1).

    Returns
    -------
    DataFrame, one row per feature: ``feature``, ``n_positive``, ``n_negative``, ``n``,
    ``fraction_positive`` (NaN when ``n = 0``), ``p``, ``p_bonferroni`` (``min(1, p·n_features)``),
    ``consistently_positive`` and ``consistently_negative`` (``p_bonferroni < alpha`` and the
    majority has that sign).
    """
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    s = np.asarray(signs)
    if s.ndim != 2 or s.size == 0:
        raise ValueError(f"signs must be a non-empty (n_models, n_features) array, got {s.shape}")
    bad = ~np.isin(s, (-1, 0, 1))
    if bad.any():
        raise ValueError(
            f"signs must hold only -1, 0, +1; found {s[bad].ravel()[:5].tolist()} "
            "(pass np.sign(weights) for raw weights)"
        )
    pos = np.sum(s == 1, axis=0)
    neg = np.sum(s == -1, axis=0)
    n = pos + neg
    # Under p = 0.5 the binomial is symmetric, so the exact two-sided p-value is twice the
    # smaller tail (capped at 1): the same number binomtest returns, computed for all features.
    p = np.minimum(1.0, 2.0 * _st.binom.cdf(np.minimum(pos, neg), n, 0.5))
    p = np.where(n == 0, 1.0, p)
    p_bonf = np.minimum(1.0, p * s.shape[1])
    significant = p_bonf < alpha
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(n > 0, pos / np.maximum(n, 1), np.nan)
    return pd.DataFrame({
        "feature": np.arange(s.shape[1]),
        "n_positive": pos,
        "n_negative": neg,
        "n": n,
        "fraction_positive": frac,
        "p": p,
        "p_bonferroni": p_bonf,
        "consistently_positive": significant & (pos > neg),
        "consistently_negative": significant & (neg > pos),
    })


def paired_difference(a, b, *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of the paired differences ``a - b`` with its t-based confidence interval.

    Use it for two curves measured on the same units (e.g. similarity after positive vs after
    negative ablation, unit by unit). Pairs with a NaN on either side are dropped.

    Parameters
    ----------
    a, b : array-likes of the same shape.
    confidence : coverage of the interval, in (0, 1).

    Returns
    -------
    (mean_difference, low, high) : as :func:`mean_ci` of ``a - b``; an interval excluding 0 is a
        paired t-test significant at ``1 - confidence``.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference needs equal shapes; got {a.shape} and {b.shape}")
    return mean_ci(a - b, confidence=confidence)


#: Largest n whose Spearman p :func:`correlation` computes exactly, over all n! pairings.
EXACT_SPEARMAN_MAX_N = 8


def _exact_spearman_p(x: np.ndarray, y: np.ndarray, rho: float) -> float:
    """Two-sided permutation p of Spearman ρ: the share of the n! pairings of the ranks whose
    |ρ| reaches |``rho``| (ties keep their average ranks)."""
    rx, ry = _st.rankdata(x), _st.rankdata(y)
    perms = np.array(list(itertools.permutations(range(rx.size))))
    cx, cy = rx - rx.mean(), ry[perms] - ry.mean()
    rhos = (cy @ cx) / (np.sqrt(np.sum(cx * cx)) * np.sqrt(np.sum(cy * cy, axis=1)))
    return float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))


def correlation(x, y) -> dict:
    """Pearson and Spearman correlation of paired 1-D arrays, with two-sided p-values.

    Pairs with a NaN on either side are dropped. Pearson's p is ``scipy.stats.pearsonr``'s (exact
    for bivariate normal data). Spearman's p is exact for n <= :data:`EXACT_SPEARMAN_MAX_N`: the
    share of the n! pairings of the ranks with |ρ| >= |ρ observed| (``scipy.stats.spearmanr``'s t
    approximation says p = 0 for a perfect ρ = 1 at n = 3, where the truth is 2/3! = 1/3); above
    it, the t approximation.

    Returns
    -------
    dict with ``n`` (complete pairs), ``pearson_r``, ``pearson_p``, ``spearman_rho``,
    ``spearman_p`` and ``spearman_p_method`` ("exact" or "t approximation"). With n < 3, or a
    constant ``x`` or ``y``, the four numbers are NaN: no correlation is computed.

    Raises
    ------
    ValueError
        If the lengths differ.
    """
    x, y = complete_pairs(x, y, "correlation")
    n = int(x.size)
    exact = n <= EXACT_SPEARMAN_MAX_N
    out = {"n": n, "pearson_r": math.nan, "pearson_p": math.nan, "spearman_rho": math.nan,
           "spearman_p": math.nan, "spearman_p_method": "exact" if exact else "t approximation"}
    if n < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return out
    pearson = _st.pearsonr(x, y)
    spear = _st.spearmanr(x, y)
    rho = float(spear.statistic)
    return out | {"pearson_r": float(pearson.statistic), "pearson_p": float(pearson.pvalue),
                  "spearman_rho": rho,
                  "spearman_p": _exact_spearman_p(x, y, rho) if exact else float(spear.pvalue)}


def describe_correlation(result: dict, *, items: str = "models", caveat: bool = True) -> str:
    """One sentence for :func:`correlation`'s result, e.g. "Pearson r = 0.99 (p = 0.09),
    Spearman ρ = 1.00 (exact p = 0.33), n = 3 models; ..."; with n < 3 it says no correlation
    was computed. Where n is so small that no Spearman p below 0.05 is possible (n <= 4: the
    smallest is 2/n!), it says so unless ``caveat=False`` (a figure's label)."""
    n = result["n"]
    if n < 3:
        items = items.removesuffix("s") if n == 1 else items
        return f"n = {n} {items}: fewer than 3, so no correlation is computed."
    if math.isnan(result["pearson_r"]):
        return f"n = {n} {items}, but one of the two is constant: no correlation is computed."
    method = "exact p" if result["spearman_p_method"] == "exact" else "p"
    text = (f"Pearson r = {result['pearson_r']:.2f} (p = {result['pearson_p']:.2g}), "
            f"Spearman ρ = {result['spearman_rho']:.2f} ({method} = {result['spearman_p']:.2g}), "
            f"n = {n} {items}")
    smallest = 2 / math.factorial(n)
    if caveat and smallest >= 0.05:
        text += (f"; with n = {n} no two-sided Spearman p can be below {smallest:.2g}, so the "
                 "test cannot reach p < 0.05")
    return text + "."

