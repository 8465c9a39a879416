"""Plotly figures built from engine results: pure functions, testable without a browser."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from torch import Tensor


def _vline(x: float, name: str, color: str, dash: str, height: float) -> go.Scatter:
    return go.Scatter(x=[x, x], y=[0, height], mode="lines", name=name,
                      line={"color": color, "dash": dash, "width": 2})


def dale_histogram_figure(dale: Tensor | np.ndarray, *, expected_untrained: float | None = None,
                          title: str = "", bins: int = 40) -> go.Figure:
    """Histogram of per-channel Dale indices, with their mean and the untrained expectation.

    The x axis starts at 0.5 (the index's floor for channels with no zero weights) and ends just
    past the largest value, so narrow distributions stay readable.
    """
    values = np.asarray(dale.detach().cpu() if isinstance(dale, Tensor) else dale, dtype=float)
    hi = min(1.0, max(float(values.max()), expected_untrained or 0.5) + 0.02)
    lo = min(0.5, float(values.min()))
    counts, _ = np.histogram(values, bins=bins, range=(lo, hi))
    height = float(counts.max()) * 1.05
    fig = go.Figure(go.Histogram(x=values, xbins={"start": lo, "end": hi, "size": (hi - lo) / bins},
                                 marker_color="#4c78a8", name="channels"))
    fig.add_trace(_vline(float(values.mean()), f"mean {values.mean():.4f}", "#222222", "solid",
                         height))
    if expected_untrained is not None:
        fig.add_trace(_vline(expected_untrained, f"untrained expectation {expected_untrained:.4f}",
                             "#e45756", "dash", height))
    fig.update_layout(title=title or None, xaxis_title="Dale index  max(p+, p−)",
                      yaxis_title="channels", bargap=0.05,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
                      margin={"t": 80 if title else 40, "l": 60, "r": 20, "b": 50})
    fig.update_xaxes(range=[lo, hi])
    return fig
