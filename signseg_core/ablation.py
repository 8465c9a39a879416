"""Ablation of a unit's positive or negative input weights by cumulative magnitude (paper §3).

The rule (paper Methods, "Ablation"): take the unit's weights of one sign, sort them by decreasing
``|w|`` and zero the first ``k`` of them, with ``k`` the smallest number whose cumulative magnitude
reaches the fraction ``alpha`` of that sign's total::

    k = min { k : sum_{i <= k} |w_i| / sum_{w in S} |w| >= alpha }

so ``alpha = 0`` removes nothing, ``alpha = 1`` removes every weight of that sign, and the largest
weights go first. The other sign and the bias are never touched.

Numerics: cumulative sums are taken in float64 and compared with a tolerance of ``1e-9`` of the
sign's total (``cumsum >= total * (alpha - 1e-9)``), so a fraction that is exactly ``alpha`` on
paper is not missed by rounding; ``alpha = 1`` is handled explicitly so it always removes all.
Ties in ``|w|`` are broken by index (stable sort): the lower index is removed first.

Nothing here edits a weight in place: shared models stay intact, and :func:`ablated_readout`
builds one new readout row per :class:`Condition` so one backbone pass scores every condition::

    rows, biases = ablated_readout(readout.weight, readout.bias, conditions)
    scores = score_conditions(features, rows, biases)        # (N, C)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from signseg_core.conditions import Condition, check_alpha, check_sign

__all__ = ["ablate_weights", "ablated_readout", "score_conditions"]

_RTOL = 1e-9


def _check_matrix(weights: Tensor, what: str) -> None:
    if not isinstance(weights, Tensor) or not weights.is_floating_point():
        raise ValueError(f"{what} must be a floating-point torch.Tensor, got {weights!r:.80}")
    if not bool(torch.isfinite(weights).all()):
        raise ValueError(f"{what} contain NaN or infinite values; cannot rank them by magnitude")


def _zero_mask(rows: Tensor, positive: Tensor, group: Tensor, alphas: Tensor) -> Tensor:
    """Which weights each condition zeroes.

    rows (G, in) distinct rows to sort once; positive (G,) bool, the sign ablated in each;
    group (C,) long, which row each condition uses; alphas (C,) float64. Returns (C, in) bool.
    """
    n_in = rows.shape[1]
    signed = torch.where(positive[:, None], rows > 0, rows < 0)
    magnitude = torch.where(signed, rows.abs().double(), torch.zeros((), dtype=torch.float64,
                                                                     device=rows.device))
    # Weights of the sign have |w| > 0 and come first; stable, so ties keep index order.
    ranked, order = torch.sort(magnitude, dim=1, descending=True, stable=True)
    cumulative = ranked.cumsum(dim=1)
    total = cumulative[:, -1]
    count = signed.sum(dim=1)
    cum_c, count_c = cumulative[group], count[group]
    threshold = total[group] * (alphas - _RTOL)
    # First position whose cumulative sum reaches the threshold; k is one more than that index.
    k = torch.searchsorted(cum_c, threshold[:, None].contiguous()).squeeze(1) + 1
    k = torch.minimum(k, count_c)
    k = torch.where(alphas == 1.0, count_c, k)
    k = torch.where(alphas == 0.0, torch.zeros_like(k), k)
    zero_ranked = torch.arange(n_in, device=rows.device)[None, :] < k[:, None]
    return torch.zeros_like(zero_ranked).scatter_(1, order[group], zero_ranked)


def ablate_weights(weights: Tensor, sign: str, alpha: float) -> Tensor:
    """Zero the largest-magnitude weights of one sign that make up a fraction ``alpha`` of it.

    Parameters
    ----------
    weights : Tensor (in,) or (units, in), floating point, finite
        One unit's input weights, or a matrix whose rows are ablated independently.
    sign : {"positive", "negative"}
        Which weights to remove; the others are returned as they are.
    alpha : float in [0, 1]
        Fraction of the sign's total magnitude to remove (see the module docstring for the rule).

    Returns
    -------
    Tensor, same shape, dtype and device as ``weights``
        A new tensor (the input is never edited) with the chosen weights set to 0. Rows with no
        weight of that sign come back unchanged.

    Examples
    --------
    Positive weights 4, 3, 2, 1 (total 10); ``alpha = 0.5``: 4/10 < 0.5 <= 7/10, so k = 2.

    >>> ablate_weights(torch.tensor([4., -1., 3., 2., -5., 1.]), "positive", 0.5)
    tensor([ 0., -1.,  0.,  2., -5.,  1.])
    """
    sign = check_sign(sign)
    alpha = check_alpha(alpha)
    _check_matrix(weights, "weights")
    if weights.ndim not in (1, 2):
        raise ValueError(
            f"weights must be one row (in,) or a matrix (units, in); got shape "
            f"{tuple(weights.shape)}"
        )
    if weights.numel() == 0:
        return weights.detach().clone()
    rows = weights.detach().reshape(-1, weights.shape[-1])
    n_rows = rows.shape[0]
    device = rows.device
    mask = _zero_mask(
        rows,
        torch.full((n_rows,), sign == "positive", device=device),
        torch.arange(n_rows, device=device),
        torch.full((n_rows,), alpha, dtype=torch.float64, device=device),
    )
    out = torch.where(mask, torch.zeros((), dtype=rows.dtype, device=device), rows)
    return out.reshape(weights.shape)


def ablated_readout(
    weight: Tensor, bias: Tensor | None, conditions: Sequence[Condition]
) -> tuple[Tensor, Tensor]:
    """One ablated readout row per condition, built without touching the shared weight.

    Each (unit, sign) pair is sorted once and all its strengths are read off the same cumulative
    sum, so a full sweep (11 units x 21 conditions of a 4096-input readout) takes milliseconds.

    Parameters
    ----------
    weight : Tensor (units_total, in), floating point, finite
        The readout's weight (e.g. ``nn.Linear.weight``); it is only read.
    bias : Tensor (units_total,) or None
        The readout's bias; None gives zero biases.
    conditions : sequence of Condition, length C

    Returns
    -------
    rows : Tensor (C, in), detached, same dtype and device as ``weight``
        Row ``c`` is ``ablate_weights(weight[unit_c], sign_c, alpha_c)``.
    biases : Tensor (C,)
        ``bias[unit_c]`` (never ablated), or zeros.
    """
    _check_matrix(weight, "the readout weight")
    if weight.ndim != 2:
        raise ValueError(f"the readout weight must be (units, in); got shape {tuple(weight.shape)}")
    n_units, n_in = weight.shape
    if bias is not None and tuple(bias.shape) != (n_units,):
        raise ValueError(f"bias must have shape ({n_units},), got {tuple(bias.shape)}")
    w = weight.detach()
    device = w.device
    for cond in conditions:
        if not isinstance(cond, Condition):
            raise ValueError(f"expected Condition objects, got {cond!r:.80}")
        if cond.unit >= n_units:
            raise ValueError(
                f"unit {cond.unit} is out of range: this readout has {n_units} units "
                f"(valid units are 0..{n_units - 1})"
            )
    units = torch.tensor([c.unit for c in conditions], dtype=torch.long, device=device)
    if not conditions or n_in == 0:
        rows = w[units].clone()
    else:
        pairs = list(dict.fromkeys((c.unit, c.sign) for c in conditions))
        pair_index = {pair: i for i, pair in enumerate(pairs)}
        mask = _zero_mask(
            w[torch.tensor([u for u, _ in pairs], dtype=torch.long, device=device)],
            torch.tensor([s == "positive" for _, s in pairs], device=device),
            torch.tensor([pair_index[(c.unit, c.sign)] for c in conditions], device=device),
            torch.tensor([c.alpha for c in conditions], dtype=torch.float64, device=device),
        )
        rows = torch.where(mask, torch.zeros((), dtype=w.dtype, device=device), w[units])
    if bias is None:
        biases = torch.zeros(len(conditions), dtype=w.dtype, device=device)
    else:
        biases = bias.detach()[units].clone()
    return rows, biases


def score_conditions(features: Tensor, rows: Tensor, biases: Tensor) -> Tensor:
    """Score every condition at once: ``features @ rows.T + biases``.

    Parameters
    ----------
    features : Tensor (N, in)
        Readout inputs (penultimate activations) of N images.
    rows, biases : Tensor (C, in), Tensor (C,)
        From :func:`ablated_readout`; moved to ``features``' device and dtype.

    Returns
    -------
    Tensor (N, C): the ablated unit's logit for every image and condition.
    """
    if features.ndim != 2 or rows.ndim != 2 or features.shape[1] != rows.shape[1]:
        raise ValueError(
            f"features (N, in) and rows (C, in) must share 'in'; got {tuple(features.shape)} "
            f"and {tuple(rows.shape)}"
        )
    if tuple(biases.shape) != (rows.shape[0],):
        raise ValueError(f"biases must have shape ({rows.shape[0]},), got {tuple(biases.shape)}")
    rows = rows.to(device=features.device, dtype=features.dtype)
    biases = biases.to(device=features.device, dtype=features.dtype)
    return features @ rows.T + biases
