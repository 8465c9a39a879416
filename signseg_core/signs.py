"""Sign statistics of a layer's weights: the Dale index, sign ratios and channel rankings.

The paper's Dale index (Methods, "Dale index"; appendix A.3, Table 3) asks, for each channel that
*sends* weights into a layer, how consistently those outgoing weights share one sign:
``D = max(p+, p-)``. For a Linear weight ``W[out, in]`` the outgoing weights of input unit ``j`` are
the column ``W[:, j]``; for a Conv2d weight ``W[out, in, kh, kw]`` each kernel is first averaged
over its spatial positions (A.3), leaving one signed number per (out, in) pair.

Conventions used throughout:

* **Zeros count as neither sign.** ``p+ = #(w > 0) / n`` and ``p- = #(w < 0) / n`` with ``n`` the
  total number of outgoing weights, so ``D`` of a channel without zeros lies in [0.5, 1], and a
  channel whose outgoing weights are *all* zero (pruned or dead) gets ``D = 0.0``. That value falls
  out of the formula with no special case, and it keeps a dead channel visibly apart from a balanced
  one (``D = 0.5``) instead of hiding it among them; NaN would poison every layer mean.
* **Grouped convolutions** (``groups > 1``): input channel ``c`` of group ``g`` only sends to the
  ``out / groups`` output channels of group ``g``, so its ``D`` is computed over those alone and
  ``n_outgoing = out / groups``. Depthwise convolutions send one (averaged) weight per channel, so
  their ``D`` is 1 by construction; :func:`layer_summary` says so in its ``note`` column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from scipy.special import gammaln
from torch import Tensor, nn

from signseg_core.checks import check_int

__all__ = [
    "compare_trained_untrained",
    "dale_histogram_edges",
    "dale_index",
    "expected_untrained_dale_index",
    "layer_summary",
    "positive_negative_ratio",
    "rank_channels",
    "ratio_summary",
    "readout_dale_vs_accuracy",
]

_SUMMARY_COLUMNS = [
    "layer", "kind", "in_channels", "out_channels", "groups", "n_outgoing", "mean_dale",
    "std_dale", "expected_untrained", "n_below_half", "hist", "note",
]


def _as_float(weight: Tensor) -> Tensor:
    """Detached weight in at least float32 (half precision and integers are promoted)."""
    if not isinstance(weight, Tensor):
        raise ValueError(f"expected a torch.Tensor weight, got {type(weight).__name__}")
    w = weight.detach()
    if not w.is_floating_point() or w.element_size() < 4:
        w = w.float()
    return w


def _sender_matrix(weight: Tensor, *, groups: int = 1) -> Tensor:
    """Outgoing weights grouped by sender: ``(groups, out / groups, in / groups)``.

    Conv kernels are averaged over their spatial positions first.
    """
    w = _as_float(weight)
    if w.ndim == 4:
        w = w.mean(dim=(2, 3))
    elif w.ndim != 2:
        raise ValueError(
            f"expected a Linear weight (out, in) or a Conv2d weight (out, in, kh, kw); "
            f"got a tensor with {w.ndim} dimensions, shape {tuple(w.shape)}"
        )
    groups = check_int("groups", groups, low=1)
    n_out, n_in_per_group = w.shape
    if n_out % groups:
        raise ValueError(f"groups={groups} does not divide the {n_out} output channels")
    return w.reshape(groups, n_out // groups, n_in_per_group)


def _sign_counts(weight: Tensor, *, groups: int = 1) -> tuple[Tensor, Tensor, int]:
    """Per sender channel: (#positive, #negative) outgoing weights, each ``(in,)``, and ``n``."""
    m = _sender_matrix(weight, groups=groups)
    n_pos = (m > 0).sum(dim=1).reshape(-1)
    n_neg = (m < 0).sum(dim=1).reshape(-1)
    return n_pos, n_neg, m.shape[1]


def dale_index(weight: Tensor, *, groups: int = 1) -> Tensor:
    """Dale index of every sender (input) channel of one layer.

    Parameters
    ----------
    weight : Tensor (out, in) or (out, in / groups, kh, kw)
        A Linear or Conv2d weight, any device and dtype. Conv kernels are averaged over space first.
    groups : int, default 1
        The convolution's ``groups``; each input channel then sends to ``out / groups`` channels.

    Returns
    -------
    Tensor (in,), float32 or float64, on ``weight``'s device
        ``max(p+, p-)`` per input channel, in [0.5, 1] when no outgoing weight is exactly zero;
        zeros count as neither sign, and an all-zero channel gets 0.0 (see the module docstring).

    Raises
    ------
    ValueError
        If ``weight`` is not 2-D or 4-D, or ``groups`` does not divide its output channels.
    """
    n_pos, n_neg, n = _sign_counts(weight, groups=groups)
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    return torch.maximum(n_pos, n_neg).to(dtype) / n


def expected_untrained_dale_index(n: int) -> float:
    """Exact expected Dale index of ``n`` i.i.d. symmetric, continuous outgoing weights.

    ``E[max(K, n - K)] / n`` with ``K ~ Binomial(n, 1/2)``, summed exactly over the binomial
    probabilities (computed through log-gamma, so large ``n`` is fine). For ``n = 1000`` this is
    0.5126, the untrained readout value in the paper's Table 3.

    Parameters
    ----------
    n : int >= 1
        Number of outgoing weights per channel.

    Returns
    -------
    float in (0.5, 1]
        1.0 for ``n = 1``, 0.75 for ``n = 2`` and ``n = 3``, tending to 0.5 like
        ``0.5 + 1 / sqrt(2 pi n)``.
    """
    n = check_int("n (the number of outgoing weights)", n, low=1)
    k = np.arange(n + 1, dtype=np.float64)
    log_pmf = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) - n * np.log(2.0)
    return float(np.sum(np.exp(log_pmf) * np.maximum(k, n - k)) / n)


def positive_negative_ratio(weight: Tensor) -> Tensor:
    """Sum of positive over sum of |negative| input weights, per output unit (paper Table 2).

    Parameters
    ----------
    weight : Tensor (out, in) or (out, in / groups, kh, kw)
        A Linear or Conv2d weight; a conv output channel uses all of its ``in x kh x kw`` weights.

    Returns
    -------
    Tensor (out,), float, >= 0
        ``inf`` for a unit with no negative weights, NaN for a unit whose weights are all zero.
    """
    w = _as_float(weight)
    if w.ndim not in (2, 4):
        raise ValueError(
            f"expected a Linear weight (out, in) or a Conv2d weight (out, in, kh, kw); "
            f"got shape {tuple(w.shape)}"
        )
    rows = w.reshape(w.shape[0], -1)
    return rows.clamp(min=0).sum(dim=1) / (-rows).clamp(min=0).sum(dim=1)


def ratio_summary(weight: Tensor) -> tuple[float, float]:
    """Mean and (population, ddof=0) standard deviation of :func:`positive_negative_ratio`.

    Infinite or NaN ratios propagate, so a degenerate unit is never silently dropped.
    """
    r = positive_negative_ratio(weight).double().cpu().numpy()
    return float(r.mean()), float(r.std())


def rank_channels(weight: Tensor, *, groups: int = 1) -> pd.DataFrame:
    """Rank one layer's sender channels from the most positive to the most negative.

    Parameters
    ----------
    weight : Tensor (out, in) or (out, in / groups, kh, kw)
        The weight of the layer the channels send *into*.
    groups : int, default 1
        The convolution's ``groups``.

    Returns
    -------
    DataFrame, one row per input channel
        ``channel``, ``n_positive``, ``n_negative``, ``frac_positive``, ``frac_negative``,
        ``dale_index``, ``sign`` ("positive" / "negative" / "balanced", by which fraction is
        larger) and ``rank`` (1 = most positive sender). Sorted by ``frac_positive -
        frac_negative`` descending (compared as exact integer counts), ties by channel index.
    """
    n_pos, n_neg, n = _sign_counts(weight, groups=groups)
    pos = n_pos.cpu().numpy().astype(np.int64)
    neg = n_neg.cpu().numpy().astype(np.int64)
    channel = np.arange(pos.size)
    order = np.lexsort((channel, -(pos - neg)))
    sign = np.where(pos > neg, "positive", np.where(pos < neg, "negative", "balanced"))
    table = pd.DataFrame({
        "channel": channel,
        "n_positive": pos,
        "n_negative": neg,
        "frac_positive": pos / n,
        "frac_negative": neg / n,
        "dale_index": np.maximum(pos, neg) / n,
        "sign": sign,
    }).iloc[order].reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def dale_histogram_edges(*, bins: int = 20) -> np.ndarray:
    """Bin edges ``(bins + 1,)`` of the ``hist`` column of :func:`layer_summary`, over [0.5, 1]."""
    return np.linspace(0.5, 1.0, check_int("bins", bins, low=1) + 1)


def _describe(name: str, module: nn.Module) -> tuple[str, int, int, int]:
    """(kind, in_channels, out_channels, groups) of a supported layer, else ValueError."""
    if isinstance(module, nn.Conv2d):
        return "conv", module.in_channels, module.out_channels, module.groups
    if isinstance(module, nn.Linear):
        return "linear", module.in_features, module.out_features, 1
    raise ValueError(
        f"layer {name!r} is a {type(module).__name__}; only nn.Conv2d and nn.Linear layers "
        f"have a Dale index here"
    )


def layer_summary(layers: Mapping[str, nn.Module], *, bins: int = 20) -> pd.DataFrame:
    """One row of Dale-index statistics per layer, in the mapping's (forward) order.

    Parameters
    ----------
    layers : Mapping[str, nn.Conv2d | nn.Linear]
        Name to layer, e.g. a zoo model's ``model.layers`` (the readout is the last one).
    bins : int, default 20
        Number of equal-width histogram bins over [0.5, 1] (see :func:`dale_histogram_edges`).

    Returns
    -------
    DataFrame
        ``layer``, ``kind`` ("conv" / "linear"), ``in_channels``, ``out_channels``, ``groups``,
        ``n_outgoing`` (outgoing weights per channel, ``out / groups``), ``mean_dale``,
        ``std_dale`` (ddof=0), ``expected_untrained`` (:func:`expected_untrained_dale_index`
        of ``n_outgoing``), ``n_below_half`` (channels with D < 0.5, possible only with exact
        zeros, left out of ``hist``), ``hist`` (list of ``bins`` counts) and ``note`` (grouped and
        depthwise layers are flagged; empty otherwise).
    """
    bins = check_int("bins", bins, low=1)
    rows = []
    for name, module in layers.items():
        kind, n_in, n_out, groups = _describe(name, module)
        d = dale_index(module.weight, groups=groups).double().cpu().numpy()
        n_outgoing = n_out // groups
        if n_outgoing == 1:
            note = "depthwise: each channel sends one weight, so D = 1 by construction"
        elif groups > 1:
            note = f"grouped ({groups} groups): D over the {n_outgoing} channels of each group"
        else:
            note = ""
        hist, _ = np.histogram(d, bins=bins, range=(0.5, 1.0))
        rows.append({
            "layer": name, "kind": kind, "in_channels": n_in, "out_channels": n_out,
            "groups": groups, "n_outgoing": n_outgoing, "mean_dale": float(d.mean()),
            "std_dale": float(d.std()),
            "expected_untrained": expected_untrained_dale_index(n_outgoing),
            "n_below_half": int((d < 0.5).sum()), "hist": hist.tolist(), "note": note,
        })
    return pd.DataFrame(rows, columns=_SUMMARY_COLUMNS)


def compare_trained_untrained(
    trained_layers: Mapping[str, nn.Module], untrained_layers: Mapping[str, nn.Module]
) -> pd.DataFrame:
    """Mean Dale index per layer before and after training, and the change ΔDI (paper Table 3).

    Both mappings must hold the same layer names with the same weight shapes.

    Returns
    -------
    DataFrame, one row per layer in ``trained_layers`` order
        ``layer``, ``kind``, ``n_outgoing``, ``untrained_dale``, ``trained_dale``, ``delta_dale``
        (trained minus untrained) and ``expected_untrained``.
    """
    trained_names, untrained_names = list(trained_layers), list(untrained_layers)
    if set(trained_names) != set(untrained_names):
        only_t = sorted(set(trained_names) - set(untrained_names))[:10]
        only_u = sorted(set(untrained_names) - set(trained_names))[:10]
        raise ValueError(
            f"the two models have different layers: only trained {only_t}, only untrained {only_u}"
        )
    for name in trained_names:
        ts, us = trained_layers[name].weight.shape, untrained_layers[name].weight.shape
        if ts != us:
            raise ValueError(
                f"layer {name!r} has weight shape {tuple(ts)} trained but {tuple(us)} untrained"
            )
    trained = layer_summary(trained_layers).set_index("layer")
    untrained = layer_summary(untrained_layers).set_index("layer").loc[trained_names]
    return pd.DataFrame({
        "layer": trained_names,
        "kind": trained["kind"].to_numpy(),
        "n_outgoing": trained["n_outgoing"].to_numpy(),
        "untrained_dale": untrained["mean_dale"].to_numpy(),
        "trained_dale": trained["mean_dale"].to_numpy(),
        "delta_dale": trained["mean_dale"].to_numpy() - untrained["mean_dale"].to_numpy(),
        "expected_untrained": trained["expected_untrained"].to_numpy(),
    })


def readout_dale_vs_accuracy(rows: Iterable[tuple[str, Tensor, float]]) -> pd.DataFrame:
    """Readout mean Dale index against top-1 accuracy, one row per model (paper Fig. 1A).

    Parameters
    ----------
    rows : iterable of (model_name, readout_weight, top1)
        ``readout_weight`` is the readout's Linear (or 1x1 conv) weight; ``top1`` any accuracy
        number, kept as given (percent or fraction).

    Returns
    -------
    DataFrame with columns ``model``, ``mean_dale``, ``top1``, in the given order.
    """
    records = []
    for model_name, weight, top1 in rows:
        records.append({
            "model": str(model_name),
            "mean_dale": float(dale_index(weight).double().mean()),
            "top1": float(top1),
        })
    return pd.DataFrame(records, columns=["model", "mean_dale", "top1"])
