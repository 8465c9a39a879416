"""Plotly figures of the neuron-model workflow (paper Figs 7, 20-23, A.4): pure functions of
tables.

Each takes a table from :mod:`signseg_core.neurons.study` (or the NeuronStudy) and returns a
``go.Figure``; trace names are documented so tests and exports can find them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from signseg_core.figures.plots import NEUTRAL, SIGN_COLORS

__all__ = ["dale_features_figure", "fit_quality_figure", "lasso_figure", "neuron_ablation_figure",
           "population_response_figure", "prediction_scatter_figure", "sign_ratio_figure",
           "weight_distribution_figure"]

SESSION_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#9d755d", "#e45756", "#72b7b2",
                  "#eeca3b", "#ff9da6", "#bab0ac")
LABEL_COLORS = {"consistent-positive": SIGN_COLORS["positive"],
                "consistent-negative": SIGN_COLORS["negative"], "mixed": "#bbbbbb"}
_LEGEND_ABOVE = {"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0}
_LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0}


def _margin(title: str, bottom: int = 50) -> dict:
    return {"t": 80 if title else 40, "l": 60, "r": 20, "b": bottom}


def fit_quality_figure(table: pd.DataFrame, *, best: pd.DataFrame | None = None,
                       title: str = "") -> go.Figure:
    """Test r² (coefficient of determination) of every neuron model as bars sorted from best
    to worst, coloured by session (sessions in sorted order, so colours stay put when fits
    change); the hover adds train r² and, when the table has it, the squared Pearson test r².

    ``table``: :attr:`NeuronStudy.table` (``neuron, session, r2_test``, ...); ``best``: its
    best-per-session rows, drawn as stars over their bars. Traces: one bar trace per session
    (named ``"session <s>"``, or ``"neurons"`` when no session is given), then
    ``"best per session"``. NaN r² (constant responses) are left out.
    """
    part = table[table["r2_test"].notna()].sort_values("r2_test", ascending=False, kind="stable")
    order = list(part["neuron"])
    fig = go.Figure()
    sessions = sorted(set(part["session"]))
    for k, session in enumerate(sessions):
        rows = part[part["session"] == session]
        pearson = rows.get("r2_test_pearson", pd.Series(np.nan, index=rows.index))
        fig.add_trace(go.Bar(x=list(rows["neuron"]), y=list(rows["r2_test"]),
                             name=f"session {session}" if session else "neurons",
                             marker_color=SESSION_COLORS[k % len(SESSION_COLORS)],
                             customdata=np.stack([rows["r2_train"], pearson], axis=1),
                             hovertemplate="%{x}<br>test r² %{y:.3f}<br>train r² "
                                           "%{customdata[0]:.3f}<br>test squared Pearson r "
                                           "%{customdata[1]:.3f}<extra></extra>"))
    if best is not None and not best.empty:
        fig.add_trace(go.Scatter(x=list(best["neuron"]), y=list(best["r2_test"]),
                                 mode="markers", name="best per session",
                                 marker={"symbol": "star", "size": 14, "color": NEUTRAL}))
    fig.update_layout(title=title or None, barmode="overlay",
                      yaxis_title="test r² (coefficient of determination)",
                      legend=_LEGEND_ABOVE, margin=_margin(title))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order,
                     title="neuron (best fit first)")
    return fig


def sign_ratio_figure(table: pd.DataFrame, *, title: str = "", bins: int = 20) -> go.Figure:
    """Histogram of each model's sum of positive over |sum of negative| weights (Fig. 20 right).

    Traces: ``"neuron models"`` (the histogram), ``"mean <m>"`` (a vertical line) and
    ``"equal (1)"`` (dashed, ratio 1). Infinite ratios (no negative weight) are left out.
    """
    ratio = table["positive_negative_ratio"].to_numpy(dtype=float)
    ratio = ratio[np.isfinite(ratio)]
    fig = go.Figure(go.Histogram(x=list(ratio), nbinsx=bins, name="neuron models",
                                 marker_color="#4c78a8"))
    height = max(1.0, float(np.histogram(ratio, bins=bins)[0].max()) if ratio.size else 1.0)
    if ratio.size:
        mean = float(ratio.mean())
        fig.add_trace(go.Scatter(x=[mean, mean], y=[0, height], mode="lines",
                                 name=f"mean {mean:.2f}", line={"color": NEUTRAL, "width": 2}))
    fig.add_trace(go.Scatter(x=[1, 1], y=[0, height], mode="lines", name="equal (1)",
                             line={"color": "#888888", "dash": "dash"}))
    fig.update_layout(title=title or None, xaxis_title="Σ positive / |Σ negative| weights",
                      yaxis_title="neuron models", bargap=0.05, legend=_LEGEND_ABOVE,
                      margin=_margin(title))
    return fig


def weight_distribution_figure(weights, *, names=None, title: str = "",
                               bins: int = 60) -> go.Figure:
    """Each model's weights divided by their SD, overlaid histograms (Fig. 20 left).

    ``weights``: array (n_models, n_features), e.g. ``study.weights()``; ``names`` label the
    traces (default ``"0", "1", ...``). One histogram trace per model, semi-transparent.
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2:
        raise ValueError(f"weights must be (n_models, n_features), got shape {w.shape}")
    names = [str(i) for i in range(len(w))] if names is None else [str(n) for n in names]
    sd = w.std(axis=1, keepdims=True)
    z = w / np.where(sd > 0, sd, 1.0)
    lim = float(np.abs(z).max()) if z.size else 1.0
    fig = go.Figure()
    for name, row in zip(names, z):
        fig.add_trace(go.Histogram(x=list(row), name=name, opacity=0.35,
                                   xbins={"start": -lim, "end": lim, "size": 2 * lim / bins}))
    fig.update_layout(title=title or None, barmode="overlay", xaxis_title="weight / SD",
                      yaxis_title="features", showlegend=len(names) <= 12, legend=_LEGEND_ABOVE,
                      margin=_margin(title))
    return fig


def lasso_figure(table: pd.DataFrame, *, title: str = "") -> go.Figure:
    """Lasso train r², test r² and the gain of allowing negative weights vs penalty (Fig. 22).

    ``table``: :func:`~signseg_core.neurons.study.lasso_table`. Three panels on a log penalty axis:
    train r² and test r² with one line per constraint (traces ``"train: unconstrained"``,
    ``"train: positive only"``, ``"test: ..."``; test with ±SD over folds as error bars), and
    ``"test r² gain"`` (unconstrained minus positive-only) when both were fitted.
    """
    fig = make_subplots(rows=1, cols=3, subplot_titles=("train r²", "test r²",
                                                        "gain of negative weights"))
    styles = {False: ("unconstrained", NEUTRAL), True: ("positive only", SIGN_COLORS[
        "positive"])}
    for positive, (label, color) in styles.items():
        part = table[table["positive"] == positive].sort_values("penalty")
        if part.empty:
            continue
        for col, split in ((1, "train"), (2, "test")):
            fig.add_trace(go.Scatter(
                x=list(part["penalty"]), y=list(part[f"r2_{split}"]), mode="lines+markers",
                name=f"{split}: {label}", line={"color": color}, legendgroup=label,
                error_y={"type": "data", "array": list(part[f"r2_{split}_sd"]), "thickness": 1}),
                row=1, col=col)
    if "r2_test_gain" in table.columns:
        part = table[~table["positive"]].sort_values("penalty")
        fig.add_trace(go.Scatter(x=list(part["penalty"]), y=list(part["r2_test_gain"]),
                                 mode="lines+markers", name="test r² gain",
                                 line={"color": SIGN_COLORS["negative"]}), row=1, col=3)
        fig.add_hline(y=0, line_dash="dot", line_color="#888888", row=1, col=3)
    fig.update_xaxes(type="log", title="L1 penalty")
    fig.update_yaxes(title="r²", row=1, col=1)
    fig.update_layout(title=title or None, legend=_LEGEND_BELOW, margin=_margin(title, 110))
    return fig


def dale_features_figure(table: pd.DataFrame, *, title: str = "") -> go.Figure:
    """Per feature, how many neuron models weight it positively vs negatively (Fig. 23).

    ``table``: :func:`~signseg_core.neurons.study.dale_features_table`. One scatter trace per label
    present, in the order ``"consistent-positive"``, ``"consistent-negative"``, ``"mixed"``
    (hover: feature index and Bonferroni p), then ``"n+ = n−"`` (dotted diagonal).
    """
    fig = go.Figure()
    for label in LABEL_COLORS:
        part = table[table["label"] == label]
        if part.empty:
            continue
        fig.add_trace(go.Scatter(
            x=list(part["n_negative"]), y=list(part["n_positive"]), mode="markers", name=label,
            marker={"color": LABEL_COLORS[label], "size": 7 if label != "mixed" else 5,
                    "opacity": 0.8 if label != "mixed" else 0.4},
            customdata=np.stack([part["feature"], part["p_bonferroni"]], axis=1),
            hovertemplate="feature %{customdata[0]}<br>n+ %{y}, n− %{x}<br>p (Bonferroni) "
                          "%{customdata[1]:.2g}<extra></extra>"))
    top = int(table["n"].max()) if len(table) else 1
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="n+ = n−",
                             line={"color": "#888888", "dash": "dot"}))
    fig.update_layout(title=title or None, xaxis_title="neuron models with a negative weight",
                      yaxis_title="neuron models with a positive weight", legend=_LEGEND_ABOVE,
                      margin=_margin(title))
    return fig


def _sign_curves(table: pd.DataFrame):
    """``(sign, rows, colour)`` per sign present in ``table``: the control rows (alpha 0) then
    that sign's, by alpha, so both signs' lines start at the control."""
    control = table[table["sign"] == "control"]
    for sign in ("positive", "negative"):
        part = pd.concat([control, table[table["sign"] == sign]]).sort_values("alpha")
        if len(part) > len(control):
            yield sign, part, SIGN_COLORS[sign]


def neuron_ablation_figure(table: pd.DataFrame, *, natural_max: float | None = None,
                           title: str = "") -> go.Figure:
    """A neuron model's response to its preferred image against ablation strength, per sign.

    ``table``: :attr:`NeuronAblation.table`; the control (alpha 0) starts both signs' lines.
    Traces per sign present: ``"<sign>: ablated model"`` (the ablated model's response to its
    best image, solid) and ``"<sign>: intact model"`` (the intact neuron model's predicted
    response to that image, dashed); then ``"max over natural images"`` (dotted) when
    ``natural_max`` is given (:attr:`NeuronAblation.natural_max_predicted`).
    """
    fig = go.Figure()
    for sign, part, color in _sign_curves(table):
        fig.add_trace(go.Scatter(x=list(part["alpha"]), y=list(part["ablated_response"]),
                                 mode="lines+markers", line={"color": color},
                                 name=f"{sign}: ablated model"))
        fig.add_trace(go.Scatter(x=list(part["alpha"]), y=list(part["predicted_response"]),
                                 mode="lines+markers", line={"color": color, "dash": "dash"},
                                 marker={"symbol": "x"}, name=f"{sign}: intact model"))
    if natural_max is not None:
        fig.add_trace(go.Scatter(x=[0, 1], y=[natural_max] * 2, mode="lines",
                                 name="max over natural images",
                                 line={"color": "#888888", "dash": "dot"}))
    fig.update_layout(title=title or None, xaxis_title="ablation strength α",
                      yaxis_title="predicted response of the best image", legend=_LEGEND_BELOW,
                      margin=_margin(title, 110))
    fig.update_xaxes(range=[-0.02, 1.02])
    return fig


def prediction_scatter_figure(table: pd.DataFrame, *, title: str = "") -> go.Figure:
    """Recorded against predicted responses, train and test images apart (Fig. 21 left).

    ``table``: :func:`~signseg_core.neurons.study.response_table` (of one neuron). Traces:
    ``"train"``, ``"test"`` (those present) and ``"identity"`` (dotted y = x).
    """
    fig = go.Figure()
    for split, color in (("train", "#bbbbbb"), ("test", "#4c78a8")):
        part = table[table["split"] == split]
        if part.empty:
            continue
        fig.add_trace(go.Scatter(x=list(part["predicted"]), y=list(part["response"]),
                                 mode="markers", name=split, marker={"color": color},
                                 text=list(part["image"]),
                                 hovertemplate="%{text}<br>predicted %{x:.2f}<br>recorded "
                                               "%{y:.2f}<extra></extra>"))
    values = np.concatenate([table["predicted"].to_numpy(float), table["response"].to_numpy(float)])
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="identity",
                             line={"color": "#888888", "dash": "dot"}))
    fig.update_layout(title=title or None, xaxis_title="predicted response",
                      yaxis_title="recorded response", legend=_LEGEND_ABOVE,
                      margin=_margin(title))
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def population_response_figure(table: pd.DataFrame, *, title: str = "",
                               yaxis_title: str = "population response (z)") -> go.Figure:
    """The z-scored population response against ablation strength, per sign (Fig. 7 right).

    ``table``: :func:`~signseg_core.neurons.population.population_response` (one model, CI over
    images) or :func:`~signseg_core.neurons.population.population_over_models` (CI over models);
    the control (alpha 0) starts both signs' lines. Traces per sign present: ``"<sign> 95% CI"``
    (a shaded band, when any interval is finite) and ``"<sign>"`` (line); then ``"control"``
    (dotted level of the control) when there is one.
    """
    fig = go.Figure()
    for sign, part, color in _sign_curves(table):
        x = list(part["alpha"])
        low, high = part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float)
        if np.isfinite(low).any():
            fig.add_trace(go.Scatter(x=x + x[::-1], y=list(high) + list(low[::-1]),
                                     fill="toself", fillcolor=_rgba(color, 0.2), mode="none",
                                     name=f"{sign} 95% CI", hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=list(part["population_z"]), mode="lines+markers",
                                 line={"color": color}, name=sign, text=list(part["condition"]),
                                 hovertemplate="%{text}<br>z %{y:.3f}<extra></extra>"))
    control = table[table["sign"] == "control"]
    if len(control):
        level = float(control["population_z"].iloc[0])
        fig.add_trace(go.Scatter(x=[0, 1], y=[level, level], mode="lines", name="control",
                                 line={"color": "#888888", "dash": "dot"}))
    fig.update_layout(title=title or None, xaxis_title="ablation strength α",
                      yaxis_title=yaxis_title, legend=_LEGEND_BELOW, margin=_margin(title, 110))
    fig.update_xaxes(range=[-0.02, 1.02])
    return fig
