"""Plotly figures of weight dynamics against the Dale index (paper Fig 25): pure functions of the
tables and arrays that :mod:`signseg_core.analyses.dynamics` returns (the figures floor never
loads a model or a checkpoint).

Traces are named so tests and exports can find them: ``"channels"`` (the scatter),
``"bin <k>"`` (one box per Dale-index bin), ``"<layer>[<channel>]"`` (one similarity curve per
channel) and ``"threshold"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from signseg_core.figures.plots import NEUTRAL, SIGN_COLORS

__all__ = ["FRACTION_NEGATIVE_SCALE", "convergence_scatter_figure", "correlation_title",
           "similarity_curves_figure", "spread_by_bin_figure"]

#: Fraction of negative outgoing weights: 0 in the positive colour, 1 in the negative one, a
#: balanced channel in the neutral grey between (the signs' colours of every page).
FRACTION_NEGATIVE_SCALE = [[0.0, SIGN_COLORS["positive"]], [0.5, "#d9d9d9"],
                           [1.0, SIGN_COLORS["negative"]]]


def _p(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2g}"


def correlation_title(result: dict) -> str:
    """``"Spearman ρ = -0.03 (p = 0.064) · Pearson r = ... · n = ..."`` for
    :func:`~signseg_core.metrics.stats.correlation`'s result; "no correlation" with n < 3 or a
    constant variable."""
    if result["n"] < 3 or math.isnan(result["spearman_rho"]):
        return f"n = {result['n']} channels: no correlation computed"
    return (f"Spearman ρ = {result['spearman_rho']:.2f} (p = {_p(result['spearman_p'])}) · "
            f"Pearson r = {result['pearson_r']:.2f} (p = {_p(result['pearson_p'])}) · "
            f"n = {result['n']}")


def convergence_scatter_figure(table: pd.DataFrame, correlation: dict, *,
                               title: str | None = None, jitter: float = 0.15,
                               seed: int = 0) -> go.Figure:
    """Convergence epoch against final Dale index, one dot per channel, coloured by its fraction
    of negative outgoing weights (Fig 25); the correlation in the title.

    ``table``: :class:`~signseg_core.analyses.dynamics.WeightDynamics` ``.table`` (channels with
    no convergence epoch are left out). Epochs are whole checkpoints, so dots stack: each is
    shifted vertically by a seeded uniform jitter of at most ``jitter`` epochs (0: none); the
    hover shows the true epoch.
    """
    part = table[table["convergence_epoch"].notna()]
    rng = np.random.default_rng(seed)
    y = part["convergence_epoch"].to_numpy(float)
    shown = y + (rng.uniform(-jitter, jitter, y.size) if jitter else 0.0)
    hover = [f"{layer}[{c}]<br>Dale index {d:.3f}<br>negative {f:.1%}<br>epoch {e:g}"
             for layer, c, d, f, e in zip(part["layer"], part["channel"], part["dale_index"],
                                          part["frac_negative"], y)]
    fig = go.Figure(go.Scatter(
        x=part["dale_index"].to_numpy(float).tolist(), y=np.asarray(shown).tolist(),
        mode="markers", name="channels",
        text=hover, hoverinfo="text",
        marker={"color": part["frac_negative"].to_numpy(float).tolist(), "cmin": 0.0,
                "cmax": 1.0,
                "colorscale": FRACTION_NEGATIVE_SCALE, "size": 6, "opacity": 0.75,
                "colorbar": {"title": {"text": "fraction<br>negative"}},
                "line": {"width": 0.3, "color": NEUTRAL}}))
    head = "Convergence epoch vs Dale index" if title is None else title
    fig.update_layout(title={"text": f"{head}<br><sup>{correlation_title(correlation)}</sup>"},
                      xaxis_title="final Dale index", yaxis_title="convergence epoch",
                      margin={"t": 80, "l": 60, "r": 20, "b": 50}, showlegend=False)
    return fig


def spread_by_bin_figure(table: pd.DataFrame, edges: np.ndarray, index: np.ndarray,
                         test: dict | None = None, *, title: str | None = None) -> go.Figure:
    """Convergence epochs per Dale-index bin: a box (median, quartiles) with every channel as a
    point beside it, one trace ``"bin <k>"`` per non-empty bin.

    ``table``: the analysed channels (:func:`~signseg_core.analyses.dynamics_stats.
    analysed_channels`); ``edges``, ``index``: their bins
    (:func:`~signseg_core.analyses.dynamics_stats.dale_bins`); ``test``:
    :func:`~signseg_core.analyses.dynamics_stats.narrower_windows_test`'s result, whose
    Brown–Forsythe and permutation p go into the title.
    """
    epochs = table["convergence_epoch"].to_numpy(float)
    fig = go.Figure()
    for b in range(len(edges) - 1):
        e = epochs[np.asarray(index) == b]
        if e.size:
            label = f"{edges[b]:.3f}–{edges[b + 1]:.3f}"
            fig.add_trace(go.Box(y=e.tolist(), name=f"bin {b}", x=[label] * e.size, boxpoints="all",
                                 jitter=0.4, pointpos=0, marker={"size": 4, "color": NEUTRAL},
                                 line={"color": "#4c78a8"}, showlegend=False))
    head = "Spread of convergence epochs by Dale index" if title is None else title
    if test is not None:
        head += (f"<br><sup>Brown–Forsythe p = {_p(test['brown_forsythe_p'])} · "
                 f"ρ(|epoch − bin median|, Dale) = {test['rho']:.2f}, one-sided permutation "
                 f"p = {_p(test['permutation_p'])} · n = {test['n']}</sup>")
    fig.update_layout(title={"text": head}, xaxis_title="final Dale index (bin)",
                      yaxis_title="convergence epoch", margin={"t": 80, "l": 60, "r": 20,
                                                                "b": 50})
    return fig


def similarity_curves_figure(similarity: np.ndarray, epochs: np.ndarray,
                             labels: Sequence[str], rows: Sequence[int], *, threshold: float,
                             title: str | None = None) -> go.Figure:
    """Cosine similarity to the final weights over epochs for the channels ``rows`` (indices
    into ``similarity`` (channels, checkpoints) and ``labels``), with the threshold as a dashed
    line (trace ``"threshold"``)."""
    fig = go.Figure()
    x = np.asarray(epochs, dtype=float)
    for row in rows:
        fig.add_trace(go.Scatter(x=x.tolist(), y=np.asarray(similarity[row], float).tolist(),
                                 mode="lines+markers", name=str(labels[row])))
    if x.size:
        fig.add_trace(go.Scatter(x=[float(x[0]), float(x[-1])], y=[threshold] * 2, mode="lines",
                                 name="threshold", line={"color": NEUTRAL, "dash": "dash"}))
    head = "Cosine similarity to the final weights" if title is None else title
    fig.update_layout(title={"text": head}, xaxis_title="epoch",
                      yaxis_title="cosine similarity to final", yaxis={"range": [-1.05, 1.05]},
                      margin={"t": 60, "l": 60, "r": 20, "b": 50})
    return fig
