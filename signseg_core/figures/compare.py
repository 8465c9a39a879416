"""Figures that compare models side by side (the Compare page, paper Table 1 and Fig 5), and a
unit's best image per ablation strength as one image strip.

Pure functions of the tables :mod:`signseg_core.sweeps.tables` builds (``change_table``) and of
condition results: nothing here loads a model or reads the store.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from signseg_core.figures.plots import SIGN_COLORS, sign_shades
from signseg_core.figures.strips import image_strip

_LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0}
#: Marker symbols telling models apart in :func:`family_curves_figure` (and in print).
MODEL_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "star", "hexagon")
#: What the number under each condition's α in :func:`alpha_strip` is.
STRIP_NOTE = ("act: the unit's activation on the condition's best image, its weights ablated "
              "by α")


def readout_dale_figure(table: pd.DataFrame, *, expected_untrained: float | None = None,
                        title: str = "") -> go.Figure:
    """Readout mean Dale index per model, side by side (bars, in table order).

    ``table``: ``model`` and ``mean_dale`` in [0.5, 1] (e.g. the Dale page's readout table).
    Traces: ``"readout mean Dale index"``, then ``"untrained expectation"`` (dashed) if given.
    """
    models, values = list(table.model), [float(v) for v in table.mean_dale]
    fig = go.Figure(go.Bar(x=models, y=values, name="readout mean Dale index",
                           marker_color="#4c78a8", text=[f"{v:.4f}" for v in values],
                           textposition="outside"))
    if expected_untrained is not None:
        fig.add_trace(go.Scatter(x=models, y=[expected_untrained] * len(models), mode="lines",
                                 name="untrained expectation",
                                 line={"color": "#e45756", "dash": "dash"}))
    low = min([0.5, *values])
    high = max([*values, expected_untrained or 0.5]) + 0.01
    fig.update_yaxes(range=[low, high], title="readout mean Dale index")
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=models)
    fig.update_layout(title=title or None, legend=_LEGEND, bargap=0.4,
                      margin={"t": 80 if title else 40, "l": 60, "r": 20, "b": 60})
    return fig


def change_vs_model_figure(changes: pd.DataFrame, *, alpha: float, value: str = "delta",
                           y_title: str = "", title: str = "") -> go.Figure:
    """A metric at one ablation strength against ε (every model has one) or model (else).

    ``changes``: :func:`change_table`. ``value``: ``"delta"`` (change from control) or
    ``"mean"``. One trace per sign (named after it), points in table order with 95% CI bars.
    """
    if value not in ("delta", "mean"):
        raise ValueError(f"value must be 'delta' or 'mean'; got {value!r}")
    part = changes[np.isclose(changes.alpha, alpha)]
    numeric = bool(len(part)) and bool(part.eps.notna().all())
    fig = go.Figure()
    for sign in ("positive", "negative"):
        rows = part[part.sign == sign]
        if rows.empty:
            continue
        y = rows[value].to_numpy()
        fig.add_trace(go.Scatter(
            x=list(rows.eps if numeric else rows.model), y=list(y), mode="lines+markers",
            name=sign, line={"color": SIGN_COLORS[sign]},
            error_y={"type": "data", "array": list(rows[f"{value}_ci_high"].to_numpy() - y),
                     "arrayminus": list(y - rows[f"{value}_ci_low"].to_numpy()),
                     "thickness": 1}))
    default_y = "change from control (ablated − control)" if value == "delta" else "value"
    fig.update_layout(title=title or None, yaxis_title=y_title or default_y,
                      xaxis_title="L∞ training ε (/255)" if numeric else "model",
                      legend={**_LEGEND, "title": {"text": f"α = {alpha:g}, weights ablated:"}},
                      margin={"t": 80 if title else 40, "l": 60, "r": 20, "b": 60})
    if not numeric:
        fig.update_xaxes(type="category", categoryorder="array",
                         categoryarray=list(dict.fromkeys(part.model)))
    return fig


def family_curves_figure(changes: pd.DataFrame, *, value: str = "delta", y_title: str = "",
                         title: str = "") -> go.Figure:
    """Every model's curve against ablation strength, in the signs' colours of every other page
    (:data:`~signseg_core.figures.plots.SIGN_COLORS`: positive red and solid, negative blue and
    dashed), one shade (lighter first) and marker symbol per model. Traces are named
    ``"<model> · <sign>"``."""
    if value not in ("delta", "mean"):
        raise ValueError(f"value must be 'delta' or 'mean'; got {value!r}")
    fig = go.Figure()
    models = list(dict.fromkeys(changes.model))
    shades = {sign: sign_shades(sign, len(models)) for sign in SIGN_COLORS}
    for i, model in enumerate(models):
        for sign, dash in (("positive", "solid"), ("negative", "dash")):
            rows = changes[(changes.model == model) & (changes.sign == sign)].sort_values("alpha")
            if rows.empty:
                continue
            fig.add_trace(go.Scatter(
                x=list(rows.alpha), y=list(rows[value]), mode="lines+markers",
                name=f"{model} · {sign}", legendgroup=model,
                line={"color": shades[sign][i], "dash": dash},
                marker={"symbol": MODEL_SYMBOLS[i % len(MODEL_SYMBOLS)]}))
    default_y = "change from control (ablated − control)" if value == "delta" else "value"
    fig.update_layout(title=title or None, xaxis_title="ablation strength α",
                      yaxis_title=y_title or default_y,
                      legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0},
                      margin={"t": 60 if title else 20, "l": 60, "r": 20, "b": 120})
    fig.update_xaxes(range=[-0.02, 1.02])
    return fig


def alpha_strip(results: Sequence, *, tile: int = 112) -> np.ndarray:
    """A unit's best image per ablation strength, one row per sign, the control first.

    ``results``: :class:`~signseg_core.optimize.results.ConditionResult` of one unit (any subset
    of its conditions). Each image is captioned ``"α = 0.5"`` over ``"act 12.3"`` (the best
    ablated activation), and :data:`STRIP_NOTE` beneath the strip says what ``act`` is. Returns
    uint8 (H, W, 3), as :func:`~signseg_core.figures.strips.image_strip`.
    """
    if not results:
        raise ValueError("no conditions to draw: the strip needs at least one stored result")
    units = {r.key.unit for r in results}
    if len(units) != 1:
        raise ValueError(f"an alpha strip shows one unit; got units {sorted(units)}")

    def cell(r) -> tuple:
        return r.best_image, f"α = {r.key.alpha:g}\nact {r.best_scores[r.best_index]:.3g}"

    control = [r for r in results if r.key.sign == "control"]
    rows = {}
    for sign in ("positive", "negative"):
        own = sorted((r for r in results if r.key.sign == sign), key=lambda r: r.key.alpha)
        if own:
            rows[f"{sign} ablated"] = [cell(r) for r in control[:1] + own]
    if not rows:
        rows["control"] = [cell(r) for r in control[:1]]
    return image_strip(rows, tile=tile, note=STRIP_NOTE)
