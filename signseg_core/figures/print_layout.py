"""Restyling a screen figure for print: journal type sizes, a title that fits, a compact legend.

The dashboard's figures are sized for a screen. :func:`print_layout` rewrites a figure's layout
(as a plotly dict) for a panel printed at a given size, in the CSS pixels of a 96-per-inch
layout; data and colours are left alone (each legend entry is only given its row).
:mod:`signseg_core.figures.render` applies it to every export sized in inches, and the Export
page's interactive preview shows the same layout.

Room for the title and the legend is worked out from the widths of their text in Helvetica /
Arial (:func:`text_width`, the font the print layout asks for) and from how plotly.js lays out a
horizontal legend (:func:`pack_legend`), so that neither overlaps the plot nor leaves blank rows.
"""

from __future__ import annotations

import copy
import math
import re

#: CSS pixels per printed inch: a print layout of ``w`` inches is ``96 w`` layout pixels wide.
CSS_PX_PER_IN = 96

#: Print type sizes in points (a journal figure's text is 6-9 pt at its printed size); a title
#: too long for one line at ``title`` shrinks down to ``title_min`` before it wraps.
PRINT_PT = {"base": 7.0, "title": 8.0, "title_min": 7.0, "legend": 6.5, "tick": 6.5}
#: The print font: journals ask for Arial or Helvetica; Linux renders Liberation Sans (same widths).
PRINT_FONT = "Arial, Helvetica, 'Liberation Sans', sans-serif"
#: Layout margins (px) around the plot; axes push left and bottom further for their labels.
MARGIN = {"l": 40, "r": 10, "b": 30, "top_pad": 6}
#: Where the plot area starts at the latest (px): the left margin once y tick labels such as
#: "−0.25" and the axis title have pushed it; legend rows are packed to the plot's width.
PLOT_LEFT_PX = 56
#: The title and the legend rows start this far from the left edge (fraction of the width).
TITLE_X = 0.01

# Helvetica's advance widths (1/1000 em, its AFM file) of printable ASCII, space to "~".
_ASCII_WIDTHS = (
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584)
_OTHER_WIDTH = 620  # α, ε, −, ∞ ...: a little wider than the average letter
#: Estimated widths are this much larger than Helvetica's: room to spare, never an overlap.
WIDTH_SAFETY = 1.05
#: plotly.js legend geometry (src/components/legend): the symbol column (``itemwidth`` 30 plus
#: two 5-px gaps) before each entry's text, the gap after each entry, the padding around the
#: legend and the least height of an entry's row.
LEGEND_SYMBOL_PX, LEGEND_GAP_PX, LEGEND_PAD_PX, LEGEND_ROW_PX = 40, 5, 10, 19
_TAG = re.compile(r"<[^>]+>")


def pt_to_px(points: float) -> float:
    """Points → CSS px of the layout (a print layout is 96 px per printed inch)."""
    return points * CSS_PX_PER_IN / 72


def text_width(text: str, font_px: float) -> float:
    """The width in px of one line of ``text`` set in Helvetica/Arial at ``font_px``, with
    :data:`WIDTH_SAFETY` to spare (HTML tags such as ``<b>`` take no room)."""
    units = sum(_ASCII_WIDTHS[ord(c) - 32] if 32 <= ord(c) <= 126 else _OTHER_WIDTH
                for c in _TAG.sub("", text))
    return units / 1000 * font_px * WIDTH_SAFETY


def wrap_text(text: str, width_px: float, font_px: float) -> list[str]:
    """``text`` (plotly's ``<br>`` allowed) broken at spaces into lines that fit ``width_px``."""
    lines: list[str] = []
    for part in text.split("<br>"):
        words, line = part.split(), ""
        for word in words:
            trial = f"{line} {word}" if line else word
            if line and text_width(trial, font_px) > width_px:
                lines.append(line)
                trial = word
            line = trial
        lines.append(line)
    return lines


def fit_title(text: str, width_px: float) -> tuple[list[str], float]:
    """The title's lines and font size (px): one line at :data:`PRINT_PT` ``"title"`` if it
    fits ``width_px``, else one line at the largest size down to ``"title_min"``, else wrapped
    at ``"title_min"``."""
    big, small = pt_to_px(PRINT_PT["title"]), pt_to_px(PRINT_PT["title_min"])
    if "<br>" not in text:
        needed = text_width(text, 1.0)
        if needed * big <= width_px:
            return [text], big
        if needed * small <= width_px:
            return [text], math.floor(width_px / needed * 10) / 10
    return wrap_text(text, width_px, small), small


def pack_legend(names: list[str], font_px: float, room: float,
                title: str = "") -> list[list[int]]:
    """The entries ``names`` packed into rows of at most ``room`` px, in order, as plotly.js
    draws one row of a horizontal legend: a symbol column before each entry's text, a gap after
    it, padding around the row and, on the first row, ``title`` on the left. Returns the
    indices into ``names`` of each row; an entry wider than ``room`` gets a row of its own."""
    rows: list[list[int]] = []
    used = room  # forces a first row
    for i, name in enumerate(names):
        width = LEGEND_SYMBOL_PX + text_width(name, font_px) + LEGEND_GAP_PX
        if used + width > room:
            rows.append([])
            used = LEGEND_PAD_PX + (text_width(title, font_px) + 2 * LEGEND_GAP_PX
                                    if title and len(rows) == 1 else 0.0)
        rows[-1].append(i)
        used += width
    return rows


def legend_entries(fig_dict: dict) -> list[tuple[int, str]]:
    """``(trace index, name)`` of the traces a figure's legend shows (none with the legend
    off; a lone trace only when the figure or the trace asks for its legend)."""
    data, lay = fig_dict.get("data", []), fig_dict.get("layout") or {}
    if lay.get("showlegend") is False:
        return []
    alone = len(data) == 1 and lay.get("showlegend") is not True
    return [(i, str(t["name"])) for i, t in enumerate(data)
            if t.get("showlegend", True) is not False and t.get("visible", True) is not False
            and t.get("name") and not (alone and "showlegend" not in t)]


def _title_block(lay: dict, width_px: float, height_px: float) -> float:
    """Set the title flush left at the top, sized to fit; the height it takes (px)."""
    title = lay.get("title") or {}
    text = title.get("text") if isinstance(title, dict) else str(title)
    if not text:
        return 0.0
    lines, font = fit_title(str(text), width_px - 12)
    line = 1.3 * font
    # Plotly anchors a multi-line title by its first line and moves the block up by the
    # others: start that much lower so that the first line sits at the top
    lay["title"] = {"text": "<br>".join(lines), "font": {"size": font}, "x": TITLE_X,
                    "xanchor": "left", "xref": "container", "yanchor": "top",
                    "y": 1.0 - (4 + (len(lines) - 1) * line) / height_px,
                    "yref": "container", "pad": {"l": 4}}
    return len(lines) * line + 4


def _legend_block(out: dict, entries: list[tuple[int, str]], width_px: float, height_px: float,
                  top: float) -> float:
    """Lay the legend out in packed rows from ``top`` px down, between the title and the plot;
    the height it takes (px).

    plotly.js wraps a horizontal legend into columns as wide as its widest entry, so one long
    name would leave every entry a row of its own: instead each row is a legend of its own
    (``legend``, ``legend2``, ...) holding the entries that fit (:func:`pack_legend`)."""
    lay = out["layout"]
    legend = {k: v for k, v in (lay.get("legend") or {}).items()
              if k not in ("x", "y", "xanchor", "yanchor", "xref", "yref", "orientation")}
    font = pt_to_px(PRINT_PT["legend"])
    heading = legend.pop("title", None)
    label = str(heading.get("text") or "") if isinstance(heading, dict) else str(heading or "")
    room = width_px - MARGIN["r"] - PLOT_LEFT_PX  # plotly.js wraps at the plot area's width
    rows = pack_legend([name for _, name in entries], font, room, label)
    for r, row in enumerate(rows):
        key = "legend" if r == 0 else f"legend{r + 1}"
        lay[key] = {**legend, "font": {"size": font}, "orientation": "h",
                    "traceorder": "normal", "itemwidth": 30, "bgcolor": "rgba(0,0,0,0)",
                    "x": TITLE_X, "xref": "container", "xanchor": "left",
                    "y": 1.0 - (top + r * LEGEND_ROW_PX) / height_px, "yref": "container",
                    "yanchor": "top",
                    **({"title": {"text": label, "side": "left"}} if r == 0 and label else {})}
        for i in row:
            out["data"][entries[i][0]]["legend"] = key
    return len(rows) * LEGEND_ROW_PX + LEGEND_PAD_PX


def print_layout(fig_dict: dict, width_px: float, height_px: float) -> dict:
    """A figure laid out for print at ``width_px`` x ``height_px`` layout px (96 per inch).

    The dashboard's figures are sized for a screen: 12-17 px type and margins of up to 110 px
    would fill a single-column (89 mm) panel. Here: type at :data:`PRINT_PT` in
    :data:`PRINT_FONT`; the title on one line when it fits (shrinking to 7 pt first), flush left
    at the top; any legend horizontal, in as few rows as plotly.js will draw, between the title
    and the plot (:func:`pack_legend`); the top margin exactly that tall; axes pushing the
    other margins just enough for their labels. Data and the figure's own colours are untouched;
    each shown trace gets the ``legend`` of its row.
    """
    out = copy.deepcopy(fig_dict)
    lay = out.setdefault("layout", {})
    lay["font"] = {**lay.get("font", {}), "size": pt_to_px(PRINT_PT["base"]),
                   "family": PRINT_FONT}
    top = MARGIN["top_pad"] + _title_block(lay, width_px, height_px)
    entries = legend_entries(out)
    if entries:
        top += _legend_block(out, entries, width_px, height_px, top)
    lay["margin"] = {"t": top, "l": MARGIN["l"], "r": MARGIN["r"], "b": MARGIN["b"], "pad": 0}
    tick = {"automargin": True, "tickfont": {"size": pt_to_px(PRINT_PT["tick"])}}
    for key in [k for k in lay if k.startswith(("xaxis", "yaxis"))]:
        axis = lay[key] if isinstance(lay[key], dict) else {}
        axis.update(tick)
        lay[key] = axis
    for axis in ("xaxis", "yaxis"):
        lay.setdefault(axis, dict(tick))
    lay.pop("height", None)
    lay.pop("width", None)
    return out
