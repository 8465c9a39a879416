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

Whole-readout ablation (paper Figs 16, 17) applies the same rule to every unit at once: condition
``(sign, alpha)`` ablates each unit's weights of that sign at ``alpha``, unit by unit (each row's
own total, its own ``k``). :func:`whole_readout_ablation` builds the ``(conditions, units, in)``
stack of ablated readouts, sorting each row once per sign, and :func:`score_whole_readout`
scores every condition's full logit vector from one trunk pass::

    conditions = whole_readout_conditions(DEFAULT_ALPHAS)    # control + 10 per sign: 21
    stack = whole_readout_ablation(readout.weight, conditions)
    logits = score_whole_readout(features, stack, readout.bias)   # (N, 21, 1000)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from signseg_core.conditions import SIGNS, Condition, check_alpha, check_sign

__all__ = [
    "ablate_weights",
    "ablated_readout",
    "score_conditions",
    "score_whole_readout",
    "whole_readout_ablation",
    "whole_readout_conditions",
]

_RTOL = 1e-9


def _check_matrix(weights: Tensor, what: str) -> None:
    if not isinstance(weights, Tensor) or not weights.is_floating_point():
        raise ValueError(f"{what} must be a floating-point torch.Tensor, got {weights!r:.80}")
    if not bool(torch.isfinite(weights).all()):
        raise ValueError(f"{what} contain NaN or infinite values; cannot rank them by magnitude")


def _rank_by_magnitude(rows: Tensor, positive: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each row's weights of its sign, ranked once: the rule's sort.

    rows (G, in); positive (G,) bool, the sign ablated in each row. Returns ``order`` (G, in)
    long (input index at each rank), ``cumulative`` (G, in) float64 (cumulative magnitude along
    the ranks) and ``count`` (G,) long (how many weights the row has of its sign).
    """
    signed = torch.where(positive[:, None], rows > 0, rows < 0)
    magnitude = torch.where(signed, rows.abs().double(), torch.zeros((), dtype=torch.float64,
                                                                     device=rows.device))
    # Weights of the sign have |w| > 0 and come first; stable, so ties keep index order.
    ranked, order = torch.sort(magnitude, dim=1, descending=True, stable=True)
    return order, ranked.cumsum(dim=1), signed.sum(dim=1)


def _removal_counts(cumulative: Tensor, count: Tensor, alphas: Tensor) -> Tensor:
    """``k`` of the rule for each row: cumulative (R, in) float64, count (R,), alphas (R,)
    float64. Returns (R,) long, the number of ranked weights to zero."""
    threshold = cumulative[:, -1] * (alphas - _RTOL)
    # First position whose cumulative sum reaches the threshold; k is one more than that index.
    k = torch.searchsorted(cumulative, threshold[:, None].contiguous()).squeeze(1) + 1
    k = torch.minimum(k, count)
    k = torch.where(alphas == 1.0, count, k)
    return torch.where(alphas == 0.0, torch.zeros_like(k), k)


def _mask_from_counts(order: Tensor, k: Tensor) -> Tensor:
    """(R, in) bool: True at the first ``k`` ranked positions of each row, in input order."""
    zero_ranked = torch.arange(order.shape[1], device=order.device)[None, :] < k[:, None]
    return torch.zeros_like(zero_ranked).scatter_(1, order, zero_ranked)


def _zero_mask(rows: Tensor, positive: Tensor, group: Tensor, alphas: Tensor) -> Tensor:
    """Which weights each condition zeroes.

    rows (G, in) distinct rows to sort once; positive (G,) bool, the sign ablated in each;
    group (C,) long, which row each condition uses; alphas (C,) float64. Returns (C, in) bool.
    """
    order, cumulative, count = _rank_by_magnitude(rows, positive)
    k = _removal_counts(cumulative[group], count[group], alphas)
    return _mask_from_counts(order[group], k)


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


def whole_readout_conditions(alphas: Sequence[float], signs: Sequence[str] = SIGNS
                             ) -> tuple[tuple[str, float], ...]:
    """The whole-readout grid: ``("control", 0.0)`` once (when 0 is among ``alphas``), then
    ``(sign, alpha)`` for each sign in ``signs`` and each nonzero alpha, in the order given.

    Alphas are checked and rounded to 6 decimals like a :class:`Condition`; duplicates are
    dropped. 11 alphas and both signs give 21 conditions, as for one unit.
    """
    signs = tuple(dict.fromkeys(check_sign(s) for s in signs))
    values = tuple(dict.fromkeys(round(check_alpha(a), 6) for a in alphas))
    if not values or not signs:
        raise ValueError("whole-readout ablation needs at least one alpha and one sign")
    out: list[tuple[str, float]] = [("control", 0.0)] if 0.0 in values else []
    out += [(sign, a) for sign in signs for a in values if a != 0.0]
    return tuple(out)


def whole_readout_ablation(weight: Tensor, conditions: Sequence[tuple[str, float]]) -> Tensor:
    """Every unit's weights of one sign ablated at alpha, for each condition: a new stack.

    Row ``u`` of condition ``(sign, alpha)`` is ``ablate_weights(weight[u], sign, alpha)``: the
    per-unit rule of the module docstring (each unit's own cumulative magnitude, ties by index),
    computed by the same code; ``("control", 0.0)`` is ``weight`` itself. Each row is ranked once
    per sign for all alphas.

    Parameters
    ----------
    weight : Tensor (units, in), floating point, finite
        The readout's weight; only read (shared models stay intact).
    conditions : sequence of (sign, alpha), length C
        From :func:`whole_readout_conditions`; sign "positive", "negative" or "control" (alpha 0).

    Returns
    -------
    Tensor (C, units, in), same dtype and device as ``weight``, detached.
        C x units x in values: 21 x 1000 x 2048 float32 (ResNet50) is 172 MB.
    """
    _check_matrix(weight, "the readout weight")
    if weight.ndim != 2:
        raise ValueError(f"the readout weight must be (units, in); got shape {tuple(weight.shape)}")
    w = weight.detach()
    n_units, device = w.shape[0], w.device
    zero = torch.zeros((), dtype=w.dtype, device=device)
    ranked: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    stack = []
    for sign, alpha in conditions:
        alpha = check_alpha(alpha)
        if sign == "control" or alpha == 0.0:
            stack.append(w.clone())
            continue
        sign = check_sign(sign)
        if sign not in ranked:  # one sort per sign, shared by all its alphas
            ranked[sign] = _rank_by_magnitude(
                w, torch.full((n_units,), sign == "positive", device=device))
        order, cumulative, count = ranked[sign]
        k = _removal_counts(cumulative, count,
                            torch.full((n_units,), alpha, dtype=torch.float64, device=device))
        stack.append(torch.where(_mask_from_counts(order, k), zero, w))
    if not stack:
        return w.new_zeros((0, *w.shape))
    return torch.stack(stack)


def score_whole_readout(features: Tensor, stack: Tensor, bias: Tensor | None) -> Tensor:
    """Logits of every whole-readout condition: ``features @ stack[c].T + bias``.

    Parameters
    ----------
    features : Tensor (N, in)
        Readout inputs of N images (one trunk pass).
    stack : Tensor (C, units, in)
        From :func:`whole_readout_ablation`; moved to ``features``' device and dtype.
    bias : Tensor (units,) or None
        The readout's bias, never ablated.

    Returns
    -------
    Tensor (N, C, units)
        One matrix product (N, in) x (in, C * units); the same values batch by batch.
    """
    if features.ndim != 2 or stack.ndim != 3 or features.shape[1] != stack.shape[2]:
        raise ValueError(
            f"features (N, in) and the stack (C, units, in) must share 'in'; got "
            f"{tuple(features.shape)} and {tuple(stack.shape)}"
        )
    n_cond, n_units, n_in = stack.shape
    flat = stack.to(device=features.device, dtype=features.dtype).reshape(n_cond * n_units, n_in)
    logits = (features @ flat.T).reshape(features.shape[0], n_cond, n_units)
    if bias is not None:
        if tuple(bias.shape) != (n_units,):
            raise ValueError(f"bias must have shape ({n_units},), got {tuple(bias.shape)}")
        logits = logits + bias.detach().to(device=features.device, dtype=features.dtype)
    return logits
