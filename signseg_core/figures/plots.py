"""Plotly figures built from engine results: pure functions, testable without a browser."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from torch import Tensor

from signseg_core.figures.strips import image_strip
from signseg_core.signs import dale_index, expected_untrained_dale_index

__all__ = [  # image_strip lives in figures.strips; pages import it from here too
    "NEUTRAL", "SIGN_COLORS", "activation_vs_alpha_figure", "channel_ranking_figure",
    "dale_histogram_figure", "dale_vs_accuracy_figure", "image_strip", "layer_dale_figure",
    "metric_vs_alpha_figure", "readout_dale_histogram", "sign_shades", "spectrum_ratio_figure",
    "unit_metric_vs_alpha_figure",
]

#: Colour of reference lines and "current" markers: a mid grey that reads on the light and the dark
#: dashboard theme and in exported files alike (near-black vanished on the dark theme).
NEUTRAL = "#8c8c8c"
#: The colour of each sign on every page and export: positive weights red, negative blue.
SIGN_COLORS = {"positive": "#d62728", "negative": "#1f77b4"}


def sign_shades(sign: str, n: int) -> list[str]:
    """``n`` shades of ``sign``'s colour (:data:`SIGN_COLORS`) from lighter to darker, the
    colour itself alone when ``n`` is 1: one per model where several models' curves of one sign
    share a plot, so that red still means positive and blue negative."""
    base = np.array([int(SIGN_COLORS[sign][i:i + 2], 16) for i in (1, 3, 5)], dtype=float)
    shades = []
    for t in (np.linspace(-0.5, 0.4, n) if n > 1 else [0.0]):
        rgb = base + (255 - base) * -t if t < 0 else base * (1 - t)  # towards white / black
        shades.append("#" + "".join(f"{int(round(v)):02x}" for v in rgb))
    return shades


def _title(title: str | None, default: str) -> str:
    """The figure's title: ``default`` when none was given (None); ``""`` means no title."""
    return default if title is None else title


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
    fig.add_trace(_vline(float(values.mean()), f"mean {values.mean():.4f}", NEUTRAL, "solid",
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


def readout_dale_histogram(model) -> go.Figure:
    """:func:`dale_histogram_figure` of a zoo model's readout: one Dale index per penultimate
    channel, its mean, and the untrained expectation for that many outgoing weights."""
    weight = model.readout.weight.detach()
    return dale_histogram_figure(
        dale_index(weight), expected_untrained=expected_untrained_dale_index(weight.shape[0]),
        title=f"Readout Dale index per penultimate channel, {model.name}")


def _band(x, low, high, color: str) -> go.Scatter:
    return go.Scatter(x=list(x) + list(x)[::-1], y=list(high) + list(low)[::-1], fill="toself",
                      mode="lines", fillcolor=color, opacity=0.18, line={"width": 0},
                      hoverinfo="skip", showlegend=False)


def metric_vs_alpha_figure(summary, metric: str, *, title: str | None = None,
                           y_title: str = "") -> go.Figure:
    """A metric against ablation strength, positive vs negative, with 95% CI bands over units.

    ``summary`` is :func:`signseg_core.sweeps.run.summarize`'s table (one model). ``title``:
    by default ``"<y_title or metric> vs ablation strength α"``; ``""`` for none.
    """
    title = _title(title, f"{y_title or metric} vs ablation strength α")
    fig = go.Figure()
    for sign in ("positive", "negative"):
        part = summary[summary.sign == sign].sort_values("alpha")
        if part.empty:
            continue
        color = SIGN_COLORS[sign]
        fig.add_trace(_band(part.alpha, part[f"{metric}_ci_low"], part[f"{metric}_ci_high"],
                            color))
        fig.add_trace(go.Scatter(x=part.alpha, y=part[metric], mode="lines+markers",
                                 name=sign, line={"color": color}))
    fig.update_layout(title=title or None, xaxis_title="ablation strength α",
                      yaxis_title=y_title or metric,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0,
                              "title": {"text": "weights ablated:"}},
                      margin={"t": 100 if title else 40, "l": 60, "r": 20, "b": 50})
    fig.update_xaxes(range=[-0.02, 1.02])
    return fig


def spectrum_ratio_figure(spectra, *, alpha: float = 1.0,
                          title: str | None = None) -> go.Figure:
    """Control / ablated mean radial power spectrum at ``alpha``, per sign (paper Fig 15).

    ``spectra``: :class:`signseg_core.sweeps.run.SweepResult.spectra` (model, unit, sign, alpha,
    freq, power). Spectra are averaged over units before the ratio. ``title``: by default
    ``"Power spectrum ratio, control / ablated at α = <alpha>"`` (with the unit when ``spectra``
    hold one); ``""`` for none.
    """
    units = sorted(set(spectra.unit)) if "unit" in spectra.columns else []
    title = _title(title, f"Power spectrum ratio, control / ablated at α = {alpha:g}"
                   + (f", unit {units[0]}" if len(units) == 1 else ""))
    mean = spectra.groupby(["sign", "alpha", "freq"]).power.mean().reset_index()
    control = mean[mean.sign == "control"].set_index("freq").power
    fig = go.Figure()
    for sign in ("positive", "negative"):
        part = mean[(mean.sign == sign) & np.isclose(mean.alpha, alpha)].set_index("freq").power
        if part.empty:
            continue
        ratio = control.reindex(part.index) / part
        fig.add_trace(go.Scatter(x=ratio.index, y=ratio.values, mode="lines",
                                 name=f"{sign} α={alpha:g}", line={"color": SIGN_COLORS[sign]}))
    fig.add_hline(y=1.0, line_dash="dot", line_color="#888")
    fig.update_layout(title=title or None, xaxis_title="spatial frequency (cycles/image)",
                      yaxis_title="power ratio control / ablated", xaxis_type="log",
                      yaxis_type="log",
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
                      margin={"t": 80 if title else 40, "l": 60, "r": 20, "b": 50})
    return fig


# -- Dale-index pages --------------------------------------------------------------------------

_LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0}


def layer_dale_figure(summary, *, comparison=None, title: str = "") -> go.Figure:
    """Mean Dale index per layer (± std over channels), with the untrained expectation.

    Parameters
    ----------
    summary : DataFrame
        :func:`signseg_core.signs.layer_summary` of one model, in forward order.
    comparison : DataFrame, optional
        :func:`signseg_core.signs.compare_trained_untrained` of the same model; adds the measured
        mean Dale index of the untrained network per layer.

    Traces, in order: ``"mean Dale index"`` (layers sending to more than one channel),
    ``"depthwise (D = 1 by construction)"`` (only if any; hidden until clicked in the legend, so
    the y axis fits the informative layers), ``"untrained expectation"`` (the exact
    expectation for each layer's fan-out) and ``"untrained network"`` (with ``comparison``).
    The x axis is categorical: the layer names in forward order.
    """
    names = list(summary.layer)
    depthwise = summary.n_outgoing.to_numpy() == 1
    regular = summary[~depthwise]
    fig = go.Figure(go.Scatter(
        x=list(regular.layer), y=list(regular.mean_dale), mode="lines+markers",
        name="mean Dale index", line={"color": NEUTRAL}, marker={"size": 6},
        error_y={"type": "data", "array": list(regular.std_dale), "thickness": 1,
                 "color": "#999999"}))
    if depthwise.any():
        part = summary[depthwise]
        fig.add_trace(go.Scatter(x=list(part.layer), y=list(part.mean_dale), mode="markers",
                                 name="depthwise (D = 1 by construction)", visible="legendonly",
                                 marker={"color": "#bbbbbb", "symbol": "x", "size": 6}))
    fig.add_trace(go.Scatter(x=list(regular.layer), y=list(regular.expected_untrained),
                             mode="lines", name="untrained expectation",
                             line={"color": "#e45756", "dash": "dash"}))
    if comparison is not None:
        part = comparison.set_index("layer").loc[list(regular.layer)]
        fig.add_trace(go.Scatter(x=list(part.index), y=list(part.untrained_dale),
                                 mode="lines+markers", name="untrained network",
                                 line={"color": "#4c78a8"}, marker={"size": 5}))
    fig.update_layout(title=title or None, yaxis_title="mean Dale index", height=520,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
                      margin={"t": 90 if title else 40, "l": 60, "r": 20, "b": 40})
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=names,
                     tickangle=-60, tickfont={"size": 9})
    return fig


def dale_vs_accuracy_figure(table, *, expected_untrained: float | None = None,
                            highlight: str | None = None, title: str = "",
                            note: str = "") -> go.Figure:
    """Readout mean Dale index against top-1 accuracy, one labelled point per model (Fig 1A).

    ``table``: :func:`signseg_core.signs.readout_dale_vs_accuracy` (``model``, ``mean_dale``,
    ``top1``). Traces: ``"models"``, then ``highlight`` (the chosen model, drawn over its point,
    when it is in the table), then ``"untrained expectation"`` (a vertical line). ``note``: a
    line above the plot, e.g. the correlation
    (:func:`~signseg_core.metrics.stats.describe_correlation`), so an export carries it.
    """
    fig = go.Figure(go.Scatter(x=list(table.mean_dale), y=list(table.top1), mode="markers+text",
                               text=list(table.model), textposition="top center", name="models",
                               marker={"color": "#4c78a8", "size": 10}))
    chosen = table[table.model == highlight] if highlight is not None else table.iloc[:0]
    if not chosen.empty:
        fig.add_trace(go.Scatter(x=list(chosen.mean_dale), y=list(chosen.top1), mode="markers",
                                 name=str(highlight),
                                 marker={"color": "#f58518", "size": 14, "symbol": "diamond"}))
    xs = list(table.mean_dale) + ([expected_untrained] if expected_untrained is not None else [])
    if expected_untrained is not None:
        ys = list(table.top1)
        lo, hi = (min(ys) - 1, max(ys) + 1) if ys else (0, 100)
        fig.add_trace(go.Scatter(x=[expected_untrained] * 2, y=[lo, hi], mode="lines",
                                 name=f"untrained expectation {expected_untrained:.4f}",
                                 line={"color": "#e45756", "dash": "dash"}))
    if xs:
        pad = max((max(xs) - min(xs)) * 0.1, 0.002)
        fig.update_xaxes(range=[min(xs) - pad, max(xs) + pad])
    if note:
        fig.add_annotation(text=note, xref="paper", yref="paper", x=0, y=1, xanchor="left",
                           yanchor="bottom", showarrow=False, font={"size": 12})
    top = (60 if title else 20) + (24 if note else 0)
    fig.update_layout(title=title or None, xaxis_title="readout mean Dale index",
                      yaxis_title="ImageNet top-1 (%)", legend=_LEGEND_BELOW,
                      margin={"t": top, "l": 60, "r": 20, "b": 110})
    return fig


def channel_ranking_figure(ranking, *, title: str = "") -> go.Figure:
    """Sender channels from the most positive to the most negative (one bar each).

    ``ranking``: :func:`signseg_core.signs.rank_channels`. Bar height is ``frac_positive -
    frac_negative`` in [-1, 1]; colour is the channel's sign (positive red, negative blue,
    balanced grey); hovering shows the channel index and its Dale index.
    """
    colors = [SIGN_COLORS.get(s, "#999999") for s in ranking.sign]
    balance = (ranking.frac_positive - ranking.frac_negative).to_numpy()
    fig = go.Figure(go.Bar(
        x=list(ranking["rank"]), y=list(balance), marker={"color": colors, "line": {"width": 0}},
        customdata=np.stack([ranking.channel.to_numpy(), ranking.dale_index.to_numpy()], axis=1),
        hovertemplate="rank %{x}<br>channel %{customdata[0]}<br>Dale index %{customdata[1]:.3f}"
                      "<br>p+ − p− %{y:.3f}<extra></extra>",
        name="sender channels"))
    fig.update_layout(title=title or None, xaxis_title="rank (1 = most positive sender)",
                      yaxis_title="p+ − p−  (fraction of outgoing weights)", bargap=0,
                      showlegend=False, margin={"t": 60 if title else 20, "l": 60, "r": 20,
                                                "b": 50})
    return fig


# -- ablation explorer -------------------------------------------------------------------------

def _unit_title(what: str, models, units) -> str:
    """``"Similarity vs α, efficientnet_lite0 unit 373"`` (the model and unit when there is
    exactly one of each)."""
    models, units = sorted(set(models)), sorted(set(units))
    where = " ".join([*([str(models[0])] if len(models) == 1 else []),
                      *([f"unit {units[0]}"] if len(units) == 1 else [])])
    return f"{what} vs α" + (f", {where}" if where else "")


def _shown_ring(x: float, y: float) -> go.Scatter:
    """The ring marking the condition on screen (trace ``"shown"``)."""
    return go.Scatter(x=[x], y=[y], mode="markers", name="shown",
                      marker={"size": 16, "color": "rgba(0,0,0,0)",
                              "line": {"width": 2, "color": NEUTRAL}})


def activation_vs_alpha_figure(results, *, current: tuple[str, float] | None = None,
                               title: str | None = None) -> go.Figure:
    """A unit's best activation and intact logit against ablation strength, per sign (Fig 2).

    Parameters
    ----------
    results : sequence of :class:`signseg_core.optimize.visualize.ConditionResult`
        Conditions of one unit; the control (``key.sign == "control"``, alpha 0) starts both
        signs' lines. Missing conditions are simply absent from the lines.
    current : (sign, alpha), optional
        The shown condition, marked with a ring.

    Traces, per sign present: ``"<sign>: ablated activation"`` (the best ablated objective over
    restarts, solid) and ``"<sign>: intact logit"`` (the intact unit's logit on that same best
    image, dashed), both sorted by alpha; then ``"shown"`` when ``current`` has a result.
    ``title``: by default ``"Best activation vs α, <model> unit <unit>"``; ``""`` for none.
    """
    title = _title(title, _unit_title("Best activation", [r.key.model for r in results],
                                      [r.key.unit for r in results]))
    points: dict[str, list[tuple[float, float, float]]] = {"positive": [], "negative": []}
    for r in results:
        best = r.best_index
        point = (float(r.key.alpha), float(r.best_scores[best]), float(r.intact_scores[best]))
        for sign in (("positive", "negative") if r.key.sign == "control" else (r.key.sign,)):
            points[sign].append(point)
    fig = go.Figure()
    for sign, rows in points.items():
        if not rows:
            continue
        alpha, ablated, intact = (list(v) for v in zip(*sorted(rows)))
        color = SIGN_COLORS[sign]
        fig.add_trace(go.Scatter(x=alpha, y=ablated, mode="lines+markers", line={"color": color},
                                 name=f"{sign}: ablated activation"))
        fig.add_trace(go.Scatter(x=alpha, y=intact, mode="lines+markers",
                                 line={"color": color, "dash": "dash"}, marker={"symbol": "x"},
                                 name=f"{sign}: intact logit"))
        if current is not None and current[0] == sign:
            hit = [a for a in alpha if np.isclose(a, current[1])]
            if hit:
                i = alpha.index(hit[0])
                fig.add_trace(_shown_ring(alpha[i], ablated[i]))
    fig.update_layout(title=title or None, xaxis_title="ablation strength α",
                      yaxis_title="activation of the best image", legend=_LEGEND_BELOW,
                      margin={"t": 60 if title else 20, "l": 60, "r": 20, "b": 110})
    fig.update_xaxes(range=[-0.02, 1.02])
    return fig


def unit_metric_vs_alpha_figure(rows, metric: str, *, current: tuple[str, float] | None = None,
                                title: str | None = None, y_title: str = "") -> go.Figure:
    """One unit's image metric against ablation strength, per sign: every restart and their mean.

    Parameters
    ----------
    rows : DataFrame
        One row per image of ONE model's ONE unit, as :func:`signseg_core.sweeps.run.unit_rows`
        makes them (columns ``model``, ``unit``, ``sign`` in {"control", "positive",
        "negative"}, ``alpha`` in [0, 1] and ``metric``). The control rows (alpha 0) start both
        signs' lines.
    metric : str
        The column to plot, e.g. ``"similarity"``, ``"objectness"``, ``"spectral_slope"``.
    current : (sign, alpha), optional
        The shown condition, marked with a ring on its sign's mean line (alpha 0: the control
        point of that sign's line).

    Traces, per sign with any finite value: ``"<sign>: mean over restarts"`` (lines+markers,
    the NaN-skipping mean of the condition's images, sorted by alpha) and ``"<sign>: restarts"``
    (one dot per finite image value, not in the legend: it toggles with its sign's mean); then
    ``"shown"`` when ``current`` has a mean. A condition
    whose values are all NaN (e.g. objectness without a detector) is left out. ``title``: by
    default ``"Similarity vs α, <model> unit <unit>"`` (the metric's name); ``""`` for none.

    Raises
    ------
    ValueError : ``metric`` is not a column, or ``rows`` hold more than one model or unit.
    """
    if metric not in rows.columns:
        raise ValueError(f"unknown metric {metric!r}; choose from {list(rows.columns)}")
    for column in ("model", "unit"):
        values = sorted(set(rows[column])) if column in rows.columns else []
        if len(values) > 1:
            raise ValueError(f"rows must hold one {column}; got {values}")
    title = _title(title, _unit_title(metric.replace("_", " ").capitalize(),
                                      rows.get("model", []), rows.get("unit", [])))
    fig = go.Figure()
    for sign in ("positive", "negative"):
        part = rows[rows.sign.isin(("control", sign))]
        part = part[np.isfinite(part[metric].to_numpy(dtype=float))]
        if part.empty:
            continue
        means = part.groupby("alpha")[metric].mean().sort_index()
        alpha, mean = [float(a) for a in means.index], [float(v) for v in means.to_numpy()]
        color = SIGN_COLORS[sign]
        fig.add_trace(go.Scatter(x=alpha, y=mean, mode="lines+markers", line={"color": color},
                                 name=f"{sign}: mean over restarts", legendgroup=sign))
        fig.add_trace(go.Scatter(x=[float(a) for a in part.alpha],
                                 y=[float(v) for v in part[metric]], mode="markers",
                                 marker={"color": color, "size": 5, "opacity": 0.45},
                                 name=f"{sign}: restarts", legendgroup=sign, showlegend=False))
        if current is not None and current[0] == sign:
            hit = [i for i, a in enumerate(alpha) if np.isclose(a, current[1])]
            if hit:
                fig.add_trace(_shown_ring(alpha[hit[0]], mean[hit[0]]))
    fig.update_layout(title=title or None, xaxis_title="ablation strength α",
                      yaxis_title=y_title or metric, legend=_LEGEND_BELOW,
                      margin={"t": 60 if title else 20, "l": 60, "r": 20, "b": 110})
    fig.update_xaxes(range=[-0.02, 1.02])
    return fig
