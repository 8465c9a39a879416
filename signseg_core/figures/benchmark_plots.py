"""Figures of the benchmarks under whole-readout ablation (paper Figs 16, 17): pure Plotly.

Each panel plots one measure against the ablation strength α, a curve per model and sign, in the
sign's colour (:data:`~signseg_core.figures.plots.SIGN_COLORS`; several models of one sign get
shades of it, lighter to darker in table order, e.g. by ε). The control (α = 0) starts both signs'
curves. Accuracy panels carry the chance level as a grey dotted line.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from signseg_core.figures.plots import NEUTRAL, sign_shades

__all__ = ["BACKGROUND_TITLES", "SHAPE_TEXTURE_PANELS", "backgrounds_figure", "shape_texture_figure"]

#: The columns of a shape/texture table plotted, with their panel titles (paper Fig 16).
SHAPE_TEXTURE_PANELS = {"shape_accuracy": "shape accuracy", "texture_accuracy": "texture accuracy",
                        "shape_bias": "shape bias"}
#: Panel titles of the background measures (paper Fig 17).
BACKGROUND_TITLES = {
    "original": "Original", "only_fg": "Only-FG", "no_fg": "No-FG", "only_bg_b": "Only-BG-B",
    "only_bg_t": "Only-BG-T", "mixed_same": "Mixed-Same", "mixed_rand": "Mixed-Rand",
    "mixed_next": "Mixed-Next", "bg_gap": "BG-gap (Mixed-Same − Mixed-Rand)",
    "challenge": "challenge accuracy (every background)",
}


def _curves(fig: go.Figure, table: pd.DataFrame, column: str, *, row: int, col: int,
            legend: bool) -> None:
    """One line per (model, sign) of ``table[column]`` against alpha into panel (row, col)."""
    models = list(dict.fromkeys(table.model))
    for sign in ("positive", "negative"):
        shades = sign_shades(sign, len(models))
        for model, color in zip(models, shades):
            part = table[(table.model == model) & (table.sign == sign)].sort_values("alpha")
            if part.empty:
                continue
            fig.add_trace(go.Scatter(
                x=part.alpha, y=part[column], mode="lines+markers", name=f"{model} · {sign}",
                legendgroup=f"{model}{sign}", showlegend=legend,
                line={"color": color}, marker={"size": 5},
                hovertemplate=f"{model}, {sign}<br>α=%{{x}}<br>%{{y:.3f}}<extra></extra>"),
                row=row, col=col)


def _chance(fig: go.Figure, level: float, *, row: int, col: int, legend: bool) -> None:
    fig.add_trace(go.Scatter(x=[0, 1], y=[level, level], mode="lines", name=f"chance ({level:.3g})",
                             line={"color": NEUTRAL, "dash": "dot"}, showlegend=legend,
                             legendgroup="chance", hoverinfo="skip"), row=row, col=col)


def _layout(fig: go.Figure, title: str, rows: int) -> go.Figure:
    fig.update_layout(title=title or None, height=320 * rows + 80,
                      # below the axis titles (paper coordinates span every row)
                      legend={"orientation": "h", "yanchor": "top", "y": -0.3 / rows, "x": 0},
                      margin={"t": 90 if title else 40, "l": 60, "r": 20, "b": 110})
    fig.update_xaxes(range=[-0.02, 1.02], title_text="ablation strength α")
    return fig


def shape_texture_figure(table: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Shape accuracy, texture accuracy and shape bias against α (paper Fig 16).

    ``table`` is :func:`signseg_core.analyses.shape_texture.shape_texture_table`'s (one or more
    models). ``title`` None gives the default; ``""`` none.
    """
    fig = make_subplots(rows=1, cols=3, subplot_titles=list(SHAPE_TEXTURE_PANELS.values()))
    for i, column in enumerate(SHAPE_TEXTURE_PANELS, start=1):
        _curves(fig, table, column, row=1, col=i, legend=i == 1)
        fig.update_yaxes(range=[0, 1], row=1, col=i)
    fig.add_hline(y=0.5, line={"color": NEUTRAL, "dash": "dot", "width": 1}, row=1, col=3)
    default = "Shape vs texture under whole-readout ablation (cue-conflict)"
    return _layout(fig, default if title is None else title, rows=1)


def backgrounds_figure(table: pd.DataFrame, *, chance: float = 1 / 9,
                       title: str | None = None) -> go.Figure:
    """One panel per measure of ``table`` (variants, ``bg_gap``, ``challenge``) against α, with
    the chance level (1/9) on every accuracy panel (paper Fig 17).

    ``table`` is :func:`signseg_core.analyses.background_challenge.backgrounds_table`'s.
    """
    measures = [m for m in BACKGROUND_TITLES if m in set(table.measure)]
    if not measures:
        raise ValueError("the table holds no ImageNet-9 measure to plot")
    cols = min(3, len(measures))
    rows = math.ceil(len(measures) / cols)
    fig = make_subplots(rows=rows, cols=cols,
                        subplot_titles=[BACKGROUND_TITLES[m] for m in measures])
    for i, measure in enumerate(measures):
        row, col = i // cols + 1, i % cols + 1
        part = table[table.measure == measure]
        _curves(fig, part, "value", row=row, col=col, legend=i == 0)
        if measure == "bg_gap":
            fig.add_hline(y=0.0, line={"color": NEUTRAL, "width": 1}, row=row, col=col)
        else:
            _chance(fig, chance, row=row, col=col, legend=i == 0)
            fig.update_yaxes(range=[0, 1], row=row, col=col)
    default = "ImageNet-9 backgrounds under whole-readout ablation"
    return _layout(fig, default if title is None else title, rows=rows)
