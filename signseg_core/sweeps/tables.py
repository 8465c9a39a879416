"""Comparing models side by side: families and per-model tables (their figures are
:mod:`signseg_core.figures.compare`'s).

* :data:`FAMILIES` and :func:`family_models`: the robust ResNet50 ε series, ReLU vs Tanh, ...
* :func:`change_table`: per model, sign and α, a sweep metric and its change from control, with
  95% intervals over units; :func:`spearman_table` and :func:`table1`: Spearman ρ of the metric
  against each model's ε (the paper's Table 1) or any numeric position.

Sweep rows come from :func:`signseg_core.sweeps.stored.read_stored_sweep`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from signseg_core.errors import UnknownNameError
from signseg_core.metrics.stats import mean_ci, robustness_trend
from signseg_core.models.registry import TANH_ARCHS, model_eps
from signseg_core.models.weights import ROBUST_EPSILONS

#: Axis titles of the sweep's metric columns.
METRIC_LABELS = {
    "similarity": "cosine similarity to control (held-out ensemble)",
    "similarity_full": "cosine similarity to control (full ensemble, optimised network in it)",
    "lpips_similarity": "1 − LPIPS to control",
    "objectness": "objectness (detector's best box)",
    "activation": "ablated activation (best image)",
    "intact_activation": "intact logit on the same image",
    "spectral_slope": "radial spectrum slope (log-log)",
}

# -- families ----------------------------------------------------------------------------------

#: Model families offered side by side: id → (label, models in display order).
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "lite": ("Embedded EfficientNet-Lite0/1/2",
             ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")),
    "robust": ("Robust ResNet50, L∞ ε series (Table 1)",
               ("resnet50", *(f"resnet50_robust_linf_{e:g}" for e in ROBUST_EPSILONS))),
    "tanh": ("ReLU vs Tanh", ("resnet18", "resnet18_tanh")),
    "simsiam": ("Supervised vs self-supervised ResNet50", ("resnet50", "simsiam_resnet50")),
}


def family_models(family: str, *, arch: str = "resnet18") -> tuple[str, ...]:
    """The models of ``family`` (a key of :data:`FAMILIES`); ``"tanh"`` pairs ``arch`` with
    ``<arch>_tanh`` for any architecture in :data:`~signseg_core.models.registry.TANH_ARCHS`."""
    if family not in FAMILIES:
        raise UnknownNameError("family", family, list(FAMILIES))
    if family == "tanh":
        if arch not in TANH_ARCHS:
            raise ValueError(f"no Tanh variant of {arch!r}; choose from {list(TANH_ARCHS)}")
        return (arch, f"{arch}_tanh")
    return FAMILIES[family][1]


# -- tables ------------------------------------------------------------------------------------

def _ordered(models, order: Sequence[str] | None) -> list[str]:
    seen = list(dict.fromkeys(models))
    first = [m for m in (order or []) if m in seen]
    return first + sorted(m for m in seen if m not in first)


def change_table(table: pd.DataFrame, *, value: str = "similarity",
                 order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per (model, sign, alpha): ``value`` and its change from control, over units.

    Each unit counts once (the mean of its images). ``delta`` is the unit's ablated mean minus
    its control (alpha = 0) mean, so it is 0 at alpha 0 and negative when ablation lowers the
    value. Means come with 95% t-intervals over units (:func:`~signseg_core.metrics.stats.mean_ci`).

    Parameters
    ----------
    table : per-image rows (``model``, ``unit``, ``sign`` incl. ``"control"``, ``alpha``,
        ``value``), as :attr:`StoredSweep.table`.
    value : the metric column, e.g. ``"similarity"`` (in [-1, 1]).
    order : models first in this order, the rest sorted after.

    Returns
    -------
    DataFrame: ``model``, ``eps`` (:func:`~signseg_core.models.registry.model_eps`, NaN if none),
    ``sign``, ``alpha``, ``n_units``, ``mean``, ``mean_ci_low``, ``mean_ci_high``, ``delta``,
    ``delta_ci_low``, ``delta_ci_high``; the control appears under both signs at alpha 0.
    """
    missing = [c for c in ("model", "unit", "sign", "alpha", value) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {list(table.columns)}")
    per_unit = table.groupby(["model", "unit", "sign", "alpha"], as_index=False)[value].mean()
    control = per_unit[per_unit.sign == "control"].set_index(["model", "unit"])[value]
    ablated = per_unit[per_unit.sign != "control"]
    signs = list(dict.fromkeys(ablated.sign)) or ["positive", "negative"]
    ctrl = per_unit[per_unit.sign == "control"]
    both = pd.concat([ablated, *(ctrl.assign(sign=s) for s in signs)], ignore_index=True)
    index = pd.MultiIndex.from_frame(both[["model", "unit"]])
    both["delta"] = both[value].to_numpy() - control.reindex(index).to_numpy()
    rows = []
    for (model, sign, alpha), group in both.groupby(["model", "sign", "alpha"]):
        row = {"model": model, "eps": model_eps(model), "sign": sign, "alpha": alpha,
               "n_units": int(group[value].notna().sum())}
        for out, col in (("mean", value), ("delta", "delta")):
            mean, low, high = mean_ci(group[col].to_numpy())
            row.update({out: mean, f"{out}_ci_low": low, f"{out}_ci_high": high})
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    rank = {m: i for i, m in enumerate(_ordered(out.model, order))}
    out["eps"] = out.eps.astype(float)
    return (out.assign(_r=out.model.map(rank)).sort_values(["_r", "sign", "alpha"])
            .drop(columns="_r").reset_index(drop=True))


def spearman_table(table: pd.DataFrame, *, against: Mapping[str, float] | None = None,
                   value: str = "similarity", change: bool = True) -> pd.DataFrame:
    """Table 1: per (sign, alpha), Spearman ρ of a metric's change from control against each
    model's ε or position (paper Table 1 and Fig 5 correlate the change, ablated − control).

    One measurement per (model, unit, sign, alpha), the mean over the unit's images. With
    ``against=None`` models are placed at their L∞ ε
    (:func:`~signseg_core.models.registry.model_eps`, ResNet50 = 0) and models without one are
    left out (Table 1, as :meth:`~signseg_core.sweeps.run.SweepResult.save` writes it); a mapping
    places each model at its number (models absent from it are left out). The change is taken
    from each unit's own control; ``change=False`` correlates the raw value instead (not the
    paper's Table 1). Groups with fewer than 3 measurements or a constant side give NaN
    (:func:`~signseg_core.metrics.stats.robustness_trend`).

    Returns
    -------
    DataFrame: ``sign``, ``alpha``, ``rho`` in [-1, 1], ``p``, ``n``, ``n_models``.
    """
    per_unit = table.groupby(["model", "unit", "sign", "alpha"], as_index=False)[value].mean()
    if change:
        control = per_unit[per_unit.sign == "control"].set_index(["model", "unit"])[value]
        index = pd.MultiIndex.from_frame(per_unit[["model", "unit"]])
        per_unit[value] = per_unit[value].to_numpy() - control.reindex(index).to_numpy()
    ablated = per_unit[per_unit.sign != "control"].copy()
    place = ablated.model.map(model_eps) if against is None else ablated.model.map(against)
    ablated["x"] = pd.to_numeric(place, errors="coerce")
    ablated = ablated.dropna(subset=["x"])
    return robustness_trend(ablated, value=value, eps="x", by=("sign", "alpha"))


def table1(spearman: pd.DataFrame) -> pd.DataFrame:
    """:func:`spearman_table` laid out as the paper's Table 1: one row per alpha, one column
    per sign, cells ``"-0.47 (6e-05)"`` (ρ to 2 decimals, p to 1 significant digit)."""
    def cell(row) -> str:
        return "n/a" if not np.isfinite(row.rho) else f"{row.rho:.2f} ({row.p:.0e})"

    if spearman.empty:
        return pd.DataFrame(columns=["alpha"])
    cells = spearman.assign(cell=spearman.apply(cell, axis=1))
    wide = cells.pivot(index="alpha", columns="sign", values="cell")
    wide.columns = [f"{s} ρ (p)" for s in wide.columns]
    ordered = sorted(wide.columns, key=lambda c: (not c.startswith("positive"), c))
    return wide[ordered].reset_index()
