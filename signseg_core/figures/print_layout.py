"""Restyling a screen figure for print: journal type sizes, a wrapped title, room for legends.

The dashboard's figures are sized for a screen. :func:`print_layout` rewrites a figure's layout
(as a plotly dict) for a panel printed at a given size, in the CSS pixels of a 96-per-inch
layout; data and colours are left alone. :mod:`signseg_core.figures.render` applies it to every
export sized in inches.
"""

from __future__ import annotations

import copy
import math
import textwrap

#: CSS pixels per printed inch: a print layout of ``w`` inches is ``96 w`` layout pixels wide.
CSS_PX_PER_IN = 96

#: Print type sizes in points (a journal figure's text is 6-9 pt at its printed size).
PRINT_PT = {"base": 7.0, "title": 8.0, "legend": 6.5, "tick": 6.5}


def pt_to_px(points: float) -> float:
    """Points → CSS px of the layout (a print layout is 96 px per printed inch)."""
    return points * CSS_PX_PER_IN / 72


def _wrap(text: str, width_px: float, font_px: float) -> list[str]:
    """``text`` (Plotly's ``<br>`` allowed) broken into lines that fit ``width_px``."""
    per_line = max(int(width_px / (0.55 * font_px)), 8)
    return [line for part in text.split("<br>") for line in textwrap.wrap(part, per_line) or [""]]


def print_layout(fig_dict: dict, width_px: float, height_px: float) -> dict:
    """A figure laid out for print at ``width_px`` x ``height_px`` layout px (96 per inch).

    The dashboard's figures are sized for a screen: 12-17 px type and margins of up to 110 px
    would fill a single-column (89 mm) panel. Here: type at :data:`PRINT_PT`, the title wrapped
    to the width and set flush left at the top, horizontal legends in the row under it (top
    margin made room for both, from the lines' and entries' estimated widths), axes pushing the
    margins just enough for their labels. Data and the figure's own colours are untouched.
    """
    out = copy.deepcopy(fig_dict)
    lay = out.setdefault("layout", {})
    lay["font"] = {**lay.get("font", {}), "size": pt_to_px(PRINT_PT["base"])}
    top = 6.0
    title = lay.get("title") or {}
    text = title.get("text") if isinstance(title, dict) else str(title)
    if text:
        font = pt_to_px(PRINT_PT["title"])
        lines = _wrap(str(text), width_px - 12, font)
        line = 1.3 * font
        # Plotly anchors a multi-line title by its first line and moves the block up by the
        # others: start that much lower so that the first line sits at the top
        lay["title"] = {"text": "<br>".join(lines), "font": {"size": font}, "x": 0.01,
                        "xanchor": "left", "xref": "container", "yanchor": "top",
                        "y": 1.0 - (4 + (len(lines) - 1) * line) / height_px,
                        "yref": "container", "pad": {"l": 4}}
        top += len(lines) * line + 4
    legend = dict(lay.get("legend") or {})
    shown = [t for t in out.get("data", []) if t.get("showlegend", True) is not False
             and t.get("name") and not (len(out["data"]) == 1 and "showlegend" not in t)]
    if lay.get("showlegend", True) is not False and shown and legend.get("orientation") == "h":
        font = pt_to_px(PRINT_PT["legend"])
        label = (legend.get("title") or {}).get("text", "") if isinstance(
            legend.get("title"), dict) else ""
        widths = [len(str(t["name"])) * 0.6 * font + 50 for t in shown]
        room = width_px - 90  # the plot area's width: the legend wraps within it
        if len(label) * 0.6 * font + sum(widths) <= room:
            rows = 1
        else:  # wrapped, Plotly puts the entries in columns as wide as the widest one
            rows = math.ceil(len(widths) / max(1, int(room // max(widths))))
        legend.update({"font": {"size": font}, "x": 0, "xanchor": "left", "y": 1.0,
                       "yanchor": "bottom", "yref": "paper", "orientation": "h"})
        lay["legend"] = legend
        top += rows * 2.3 * font + 6  # a row holds a symbol taller than the text
    lay["margin"] = {"t": top, "l": 40, "r": 10, "b": 30, "pad": 0}
    for key in [k for k in lay if k.startswith(("xaxis", "yaxis"))]:
        axis = lay[key] if isinstance(lay[key], dict) else {}
        axis.update({"automargin": True, "tickfont": {"size": pt_to_px(PRINT_PT["tick"])}})
        lay[key] = axis
    for axis in ("xaxis", "yaxis"):
        lay.setdefault(axis, {"automargin": True, "tickfont": {"size": pt_to_px(PRINT_PT["tick"])}})
    lay.pop("height", None)
    lay.pop("width", None)
    return out
