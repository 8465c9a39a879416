"""Training curves: loss, top-1 and top-5 per epoch for several runs (ReLU against Tanh).

Pure functions of per-epoch tables (the columns of ``OUT/epochs.csv``); no files, no Ray.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: Colour of each activation on every training figure (ReLU warm, Tanh cool).
ACTIVATION_COLORS = {"relu": "#d95f02", "tanh": "#1b9e77"}
OTHER_COLOR = "#7570b3"
PANELS = (("loss", "Loss"), ("top1", "Top-1"), ("top5", "Top-5"))


def run_color(label: str) -> str:
    """The colour of a run named ``label``: its activation's when the label names one."""
    for activation, color in ACTIVATION_COLORS.items():
        if activation in label.lower():
            return color
    return OTHER_COLOR


def training_curves_figure(runs: Mapping[str, pd.DataFrame], *, title: str = "") -> go.Figure:
    """Three panels (loss, top-1, top-5) against epoch, one colour per run, training solid and
    validation dashed (where a run has validation records).

    Parameters
    ----------
    runs : label → per-epoch table with ``epoch`` and ``train_loss``, ``train_top1``,
        ``train_top5`` (fractions in [0, 1]) and optionally ``val_loss``, ``val_top1``,
        ``val_top5``; the label picks the colour (see :func:`run_color`).
    """
    fig = make_subplots(rows=1, cols=3, subplot_titles=[name for _, name in PANELS],
                        horizontal_spacing=0.08)
    for label, table in runs.items():
        color = run_color(label)
        for col, (metric, _) in enumerate(PANELS, start=1):
            scale = 1.0 if metric == "loss" else 100.0
            for split, dash in (("train", "solid"), ("val", "dash")):
                column = f"{split}_{metric}"
                if column not in table or table[column].isna().all():
                    continue
                fig.add_trace(go.Scatter(
                    x=table["epoch"], y=table[column] * scale, mode="lines+markers",
                    name=f"{label} {split}", legendgroup=f"{label} {split}",
                    showlegend=col == 1, line={"color": color, "dash": dash}), row=1, col=col)
    fig.update_xaxes(title_text="epoch", dtick=1 if _max_epoch(runs) <= 20 else None)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    for col in (2, 3):
        fig.update_yaxes(title_text="accuracy (%)", range=[0, 100], row=1, col=col)
    fig.update_layout(title=title or None, legend={"orientation": "h", "y": -0.25},
                      margin={"t": 60 if title else 40})
    return fig


def _max_epoch(runs: Mapping[str, pd.DataFrame]) -> int:
    return max((int(t["epoch"].max()) for t in runs.values() if len(t)), default=0)


def final_epoch_table(runs: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per run: its last epoch's record (percentages for top-1/top-5)."""
    rows = []
    for label, table in runs.items():
        if not len(table):
            continue
        last = table.sort_values("epoch").iloc[-1]
        row = {"run": label, "epoch": int(last["epoch"]), "train loss": last["train_loss"]}
        for split in ("train", "val"):
            for k in ("top1", "top5"):
                value = last.get(f"{split}_{k}")
                row[f"{split} {k.replace('top', 'top-')} (%)"] = (
                    None if value is None or pd.isna(value) else round(100 * value, 2))
        rate = last.get("images_per_s")
        row["images/s"] = None if rate is None or pd.isna(rate) else round(float(rate), 1)
        rows.append(row)
    return pd.DataFrame(rows)
