"""Statistics of weight dynamics against the Dale index (paper Fig 25): the correlation of
convergence epoch with Dale index, and whether high-Dale channels converge in narrower windows.

The paper reports Spearman -0.03 (p = 0.064) over every ResNet18 channel ("no obvious
correlation") and that "high Dale index channels mature within narrower time windows than more
mixed channels", judged by eye. Here that claim is two tests on Dale-index bins:

* **Brown–Forsythe** (``scipy.stats.levene(..., center="median")``): are the spreads of the
  convergence epochs equal across bins? Two-sided; any difference of spread rejects.
* **A permutation test of the direction**: with ``r_i = |e_i - median(e in i's bin)|`` (the
  Brown–Forsythe residuals, so a bin's location does not count as spread), the statistic is the
  Spearman correlation of ``r`` with the Dale index ``D``; the claim predicts it is negative. The
  null permutes the convergence epochs across channels (Dale indices and bins fixed) and
  recomputes medians, residuals and correlation; ``p = (1 + #{rho_perm <= rho}) / (1 +
  permutations)``, one-sided. A permutation whose residuals are all equal (NaN correlation) counts
  as not extreme.

Which channels count: those with a defined convergence epoch (final weights not all zero) and a
Dale index of at least 0.5 (below 0.5 happens only with exact zeros, :mod:`signseg_core.signs`).
The Dale index is non-negative, so ``|D| = D``. Note that it also depends on how many weights a
channel sends (:func:`~signseg_core.signs.expected_untrained_dale_index`), so pooling layers of
different widths, as the paper does, mixes that in.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from signseg_core.checks import check_int
from signseg_core.metrics.stats import correlation

__all__ = ["DEFAULT_BINS", "DEFAULT_PERMUTATIONS", "analysed_channels", "convergence_correlation",
           "dale_bins", "describe_windows_test", "narrower_windows_test", "spread_by_bin"]

DEFAULT_BINS = 5
DEFAULT_PERMUTATIONS = 1999
_CHUNK = 200


def analysed_channels(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a :class:`~signseg_core.analyses.dynamics.WeightDynamics` table the
    statistics use: defined convergence epoch and Dale index >= 0.5."""
    keep = table["convergence_epoch"].notna() & (table["dale_index"] >= 0.5)
    return table[keep]


def convergence_correlation(table: pd.DataFrame) -> dict:
    """Pearson and Spearman correlation of Dale index with convergence epoch over the analysed
    channels (:func:`signseg_core.metrics.stats.correlation`: two-sided p, Spearman's exact for
    n <= 8), plus ``n_left_out``."""
    part = analysed_channels(table)
    out = correlation(part["dale_index"].to_numpy(float), part["convergence_epoch"].to_numpy(float))
    return out | {"n_left_out": int(len(table) - len(part))}


def dale_bins(dale: np.ndarray, *, bins: int = DEFAULT_BINS) -> tuple[np.ndarray, np.ndarray]:
    """``(edges (bins + 1,), index (n,))``: ``bins`` equal-width bins over the observed range
    ``[min D, max D]``, each ``[low, high)`` but the last, which is closed, so the largest value
    falls in it and a value on an inner edge in the bin above. One bin when all values are equal."""
    bins = check_int("bins", bins, low=1, high=1000)
    dale = np.asarray(dale, dtype=np.float64)
    if dale.size == 0:
        return np.array([0.5, 1.0]), np.zeros(0, dtype=int)
    low, high = float(dale.min()), float(dale.max())
    if high == low:
        return np.array([low, high]), np.zeros(dale.size, dtype=int)
    edges = np.linspace(low, high, bins + 1)
    index = np.clip(np.searchsorted(edges, dale, side="right") - 1, 0, bins - 1)
    return edges, index


def spread_by_bin(table: pd.DataFrame, *, bins: int = DEFAULT_BINS) -> pd.DataFrame:
    """One row per Dale-index bin (:func:`dale_bins`) of the analysed channels: ``bin``, ``low``,
    ``high``, ``n``, ``median``, ``mean``, ``sd`` (ddof=1; NaN for one channel), ``iqr``
    (numpy's linear percentiles), ``mad`` (median absolute deviation from the median),
    ``range`` (max - min) of the convergence epochs. Empty bins are kept with n = 0."""
    part = analysed_channels(table)
    epochs = part["convergence_epoch"].to_numpy(float)
    edges, index = dale_bins(part["dale_index"].to_numpy(float), bins=bins)
    rows = []
    for b in range(len(edges) - 1):
        e = epochs[index == b]
        some = e.size > 0
        q1, q3 = np.percentile(e, [25, 75]) if some else (math.nan, math.nan)
        rows.append({
            "bin": b, "low": edges[b], "high": edges[b + 1], "n": int(e.size),
            "median": float(np.median(e)) if some else math.nan,
            "mean": float(e.mean()) if some else math.nan,
            "sd": float(e.std(ddof=1)) if e.size > 1 else math.nan, "iqr": float(q3 - q1),
            "mad": float(np.median(np.abs(e - np.median(e)))) if some else math.nan,
            "range": float(e.max() - e.min()) if some else math.nan})
    return pd.DataFrame(rows)


def bin_residuals(epochs: np.ndarray, index: np.ndarray, n_bins: int) -> np.ndarray:
    """``|e - median of e's bin|`` for a 1-D ``epochs`` or row-wise for ``(m, n)`` epochs."""
    epochs = np.atleast_2d(epochs)
    medians = np.zeros((epochs.shape[0], n_bins))
    for b in range(n_bins):
        members = index == b
        if members.any():
            medians[:, b] = np.median(epochs[:, members], axis=1)
    return np.abs(epochs - medians[:, index])


def rowwise_spearman(values: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``values`` (m, n) with fixed average ``ranks`` (n,)
    (Pearson on average ranks, ties averaged as ``scipy.stats.spearmanr``); NaN for a constant
    row."""
    r = stats.rankdata(values, axis=1)
    r = r - r.mean(axis=1, keepdims=True)
    q = ranks - ranks.mean()
    denom = np.sqrt((r * r).sum(axis=1) * (q * q).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (r @ q) / np.where(denom > 0, denom, 1.0), np.nan)


def narrower_windows_test(table: pd.DataFrame, *, bins: int = DEFAULT_BINS,
                          permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> dict:
    """The two tests of the module docstring on the analysed channels.

    Returns
    -------
    dict with ``n`` (channels), ``bins`` (asked), ``bins_tested`` (bins of >= 2 channels, those
    Brown–Forsythe compares), ``brown_forsythe_w`` and ``brown_forsythe_p`` (NaN with fewer than
    two such bins, or no spread at all), ``rho`` (Spearman of residual with Dale index; NaN with
    n < 3 or constant residuals), ``permutation_p`` (one-sided, NaN where ``rho`` is),
    ``permutations`` and ``seed`` (the ``np.random.default_rng`` seed).
    """
    permutations = check_int("permutations", permutations, low=1, high=1_000_000)
    part = analysed_channels(table)
    dale, epochs = part["dale_index"].to_numpy(float), part["convergence_epoch"].to_numpy(float)
    edges, index = dale_bins(dale, bins=bins)
    n_bins = len(edges) - 1
    groups = [epochs[index == b] for b in range(n_bins) if (index == b).sum() >= 2]
    w = p_bf = math.nan
    if len(groups) >= 2 and any(np.ptp(g) > 0 for g in groups):
        w, p_bf = (float(v) for v in stats.levene(*groups, center="median"))
    out = {"n": int(epochs.size), "bins": bins, "bins_tested": len(groups),
           "brown_forsythe_w": w, "brown_forsythe_p": p_bf, "rho": math.nan,
           "permutation_p": math.nan, "permutations": permutations, "seed": seed}
    if epochs.size < 3:
        return out
    ranks = stats.rankdata(dale)
    rho = float(rowwise_spearman(bin_residuals(epochs, index, n_bins), ranks)[0])
    if math.isnan(rho):
        return out
    rng = np.random.default_rng(seed)
    extreme, left = 0, permutations
    while left:
        m = min(left, _CHUNK)
        shuffled = rng.permuted(np.broadcast_to(epochs, (m, epochs.size)), axis=1)
        null = rowwise_spearman(bin_residuals(shuffled, index, n_bins), ranks)
        extreme += int(np.sum(null <= rho + 1e-12))  # ties with the observed count as extreme
        left -= m
    return out | {"rho": rho, "permutation_p": (1 + extreme) / (1 + permutations)}


def describe_windows_test(result: dict) -> str:
    """One sentence for :func:`narrower_windows_test`'s result."""
    if result["n"] < 3 or math.isnan(result["rho"]):
        return (f"n = {result['n']} channels: too few, or no spread in convergence epochs, to "
                "test whether high-Dale channels converge in narrower windows.")
    bf = ("Brown–Forsythe needs two bins of 2+ channels with some spread"
          if math.isnan(result["brown_forsythe_p"]) else
          f"Brown–Forsythe W = {result['brown_forsythe_w']:.2f} (p = "
          f"{result['brown_forsythe_p']:.2g}, {result['bins_tested']} bins)")
    return (f"{bf}; Spearman ρ of |epoch − bin median| with Dale index = {result['rho']:.2f} "
            f"(one-sided permutation p = {result['permutation_p']:.2g}, "
            f"{result['permutations']} permutations, seed {result['seed']}; negative means "
            f"narrower windows at high Dale index), n = {result['n']} channels.")
