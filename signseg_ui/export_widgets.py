"""Export widgets: any panel as PNG/SVG/PDF at a chosen size and DPI, its data as CSV, a zip.

:func:`export_panel` goes beneath any figure (or image strip) of any page::

    st.plotly_chart(fig, key="dale_layers_fig")
    export_panel(fig, name=f"{name}_layer_dale", key="dale_layers_export")

Figures are rendered only when a download button is pressed (Streamlit's deferred downloads), on
one shared headless Chromium started by the first render; CSV and PNG image strips need no
browser. Without Chromium the expander says so once and still offers CSV / PNG strips.

Streamlit glue only; rendering and files come from :mod:`signseg_core.figures.export`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

from signseg_core.figures.export import (
    FORMATS,
    ChromiumNotFoundError,
    ExportSize,
    chromium_path,
    figure_bytes,
    figure_data_csv,
    figure_zip,
    image_png,
    start_renderer,
)

MIME = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf",
        "csv": "text/csv", "zip": "application/zip"}
MM_PER_IN = 25.4
UNITS = ("mm", "px")
#: Widget defaults: an 89 mm (3.5 in) single column at 300 dpi; 700 × 525 px on screen.
DEFAULTS = {"width_mm": 89.0, "height_mm": 67.0, "dpi": 300, "width_px": 700, "height_px": 525,
            "scale": 2}


@dataclasses.dataclass(frozen=True)
class ExportChoice:
    """What :func:`export_panel`'s widgets chose: formats (subset of ``FORMATS``) and size."""

    formats: tuple[str, ...]
    size: ExportSize

    def __post_init__(self):
        bad = [f for f in self.formats if f not in FORMATS]
        if bad:
            raise ValueError(f"unknown format(s) {bad}; choose from {list(FORMATS)}")


def size_from_widgets(*, unit: str, width: float, height: float, dpi: float = 300,
                      scale: float = 1.0) -> ExportSize:
    """An :class:`~signseg_core.figures.export.ExportSize` from the widgets' values.

    ``unit="mm"``: ``width`` × ``height`` millimetres printed at ``dpi`` (the PNG has
    ``round(mm / 25.4 * dpi)`` pixels a side; SVG/PDF pages have that size in inches).
    ``unit="px"``: CSS pixels, the PNG ``scale`` times larger. ValueError for anything else.
    """
    if unit == "mm":
        return ExportSize(width_in=width / MM_PER_IN, height_in=height / MM_PER_IN, dpi=dpi)
    if unit == "px":
        return ExportSize(width_px=width, height_px=height, scale=scale)
    raise ValueError(f"unknown size unit {unit!r}; choose from {list(UNITS)}")


def describe_size(size: ExportSize) -> str:
    """One line: the PNG's pixels and the vector page's size."""
    (pw, ph), (lw, lh) = size.png_pixels(), size.layout_px()
    if size.in_inches:
        w_in, h_in = lw / 96, lh / 96
        return (f"PNG {pw} × {ph} px at {size.dpi:g} dpi; SVG/PDF {w_in * MM_PER_IN:.0f} × "
                f"{h_in * MM_PER_IN:.0f} mm ({w_in:.2f} × {h_in:.2f} in)")
    return f"PNG {pw} × {ph} px; SVG/PDF {lw:g} × {lh:g} CSS px"


def file_stem(name: str) -> str:
    """``name`` as a file name: letters, digits, ``_ - .``, starting with a letter or digit."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-")[:100]
    return stem or "panel"


def renderer_problem() -> str | None:
    """Why figures cannot be rendered here (no Chromium), or None."""
    return None if chromium_path() is not None else str(ChromiumNotFoundError())


def render_later(fig: go.Figure, fmt: str, size: ExportSize) -> Callable[[], bytes]:
    """A no-argument function rendering a copy of ``fig`` (for ``st.download_button``)."""
    frozen = go.Figure(fig)

    def render() -> bytes:
        start_renderer()  # one shared browser for every later download
        return figure_bytes(frozen, fmt, **dataclasses.asdict(size))

    return render


def zip_later(panels: Mapping[str, go.Figure | np.ndarray],
              choice: ExportChoice) -> Callable[[], bytes]:
    """A no-argument function returning :func:`~signseg_core.figures.export.figure_zip` of
    ``panels``."""
    frozen = {file_stem(n): (go.Figure(p) if isinstance(p, go.Figure) else p)
              for n, p in panels.items()}

    def build() -> bytes:
        if any(isinstance(p, go.Figure) for p in frozen.values()):
            start_renderer()
        return figure_zip(frozen, formats=choice.formats, size=choice.size)

    return build


@st.cache_data(show_spinner="Rendering the PNG…", max_entries=8)
def rendered_png(fig_json: str, size_json: str) -> bytes:
    """The PNG of a figure (as JSON) at a size (as ``ExportSize`` fields in JSON), cached."""
    start_renderer()
    return figure_bytes(pio.from_json(fig_json), "png", **json.loads(size_json))


def export_options(*, key: str) -> ExportChoice | None:
    """Format(s), size unit (mm or px), width, height and DPI (or PNG scale); the choice, or
    None with an ``st.error`` when the size is out of range. Values are kept for the session."""
    for name, value in {**DEFAULTS, "formats": list(FORMATS)}.items():
        st.session_state.setdefault(f"{key}_{name}", value)
    c0, c1, c2, c3, c4 = st.columns([3, 2, 2, 2, 2])
    formats = c0.multiselect("Formats", FORMATS, key=f"{key}_formats", persist_state="session")
    unit = c1.radio("Size in", UNITS, key=f"{key}_size_unit", horizontal=True,
                    persist_state="session")
    if unit == "mm":
        width = c2.number_input("Width (mm)", min_value=5.0, max_value=2000.0, step=1.0,
                                key=f"{key}_width_mm", persist_state="session")
        height = c3.number_input("Height (mm)", min_value=5.0, max_value=2000.0, step=1.0,
                                 key=f"{key}_height_mm", persist_state="session")
        dpi = c4.number_input("DPI", min_value=50, max_value=1200, step=50, key=f"{key}_dpi",
                              persist_state="session")
        scale = 1
    else:
        width = c2.number_input("Width (px)", min_value=10, max_value=5000, step=10,
                                key=f"{key}_width_px", persist_state="session")
        height = c3.number_input("Height (px)", min_value=10, max_value=5000, step=10,
                                 key=f"{key}_height_px", persist_state="session")
        scale = c4.select_slider("PNG scale", (1, 2, 3, 4), key=f"{key}_scale",
                                 persist_state="session")
        dpi = 300
    try:
        size = size_from_widgets(unit=unit, width=width, height=height, dpi=dpi, scale=scale)
    except ValueError as exc:
        st.error(str(exc))
        return None
    st.caption(describe_size(size))
    return ExportChoice(tuple(formats), size)


def download_buttons(panel: go.Figure | np.ndarray, *, name: str, key: str,
                     choice: ExportChoice | None, warn: bool = True) -> None:
    """Download buttons of one panel: a figure in each chosen format (rendered on click), its
    data as CSV and a zip of both; an image as PNG. Keys ``<key>_png``, ``_svg``, ``_pdf``,
    ``_csv``, ``_zip``. Without Chromium only CSV / PNG images, and (``warn``) one warning."""
    stem = file_stem(name)
    if isinstance(panel, np.ndarray):
        st.download_button("PNG", data=image_png(panel), file_name=f"{stem}.png",
                           mime=MIME["png"], key=f"{key}_png", on_click="ignore")
        st.caption(f"The image as shown: {panel.shape[1]} × {panel.shape[0]} px.")
        return
    problem = renderer_problem()
    if problem is not None and warn:
        st.warning(f"{problem} The data (CSV) and image strips (PNG) can still be downloaded.")
    formats = choice.formats if choice is not None and problem is None else ()
    columns = st.columns(len(formats) + 2)
    for column, fmt in zip(columns, formats):
        column.download_button(fmt.upper(), data=render_later(panel, fmt, choice.size),
                               file_name=f"{stem}.{fmt}", mime=MIME[fmt], key=f"{key}_{fmt}",
                               on_click="ignore")
    try:
        csv = figure_data_csv(panel)
    except ValueError as exc:
        columns[-2].caption(f"No CSV: {exc}")
    else:
        columns[-2].download_button("CSV (data)", data=csv, file_name=f"{stem}.csv",
                                    mime=MIME["csv"], key=f"{key}_csv", on_click="ignore")
    if formats:
        columns[-1].download_button("ZIP (all + data)", data=zip_later({stem: panel}, choice),
                                    file_name=f"{stem}.zip", mime=MIME["zip"], key=f"{key}_zip",
                                    on_click="ignore")


def png_preview(fig: go.Figure, choice: ExportChoice | None, *, key: str) -> None:
    """A toggle showing the PNG exactly as it downloads (renders once per figure and size)."""
    if choice is None or renderer_problem() is not None:
        return
    if st.toggle("Preview the PNG as exported", key=f"{key}_preview"):
        st.image(rendered_png(fig.to_json(), json.dumps(dataclasses.asdict(choice.size))),
                 caption=describe_size(choice.size))


def export_panel(panel: go.Figure | np.ndarray, *, name: str, key: str,
                 expanded: bool = False) -> ExportChoice | None:
    """An "Export" expander beneath a panel: format(s), size and DPI, and download buttons.

    Parameters
    ----------
    panel : a Plotly figure (PNG/SVG/PDF at the chosen size, its data as CSV, a zip of all), or
        a uint8 (H, W, 3) image such as an image strip (PNG as it is).
    name : file name stem (sanitised by :func:`file_stem`), e.g. ``"lite0_layer_dale"``.
    key : prefix of every widget key (unique per call on a page); widget values are kept for
        the session. Download buttons: ``<key>_png``, ``_svg``, ``_pdf``, ``_csv``, ``_zip``.
    expanded : open the expander at first.

    Returns
    -------
    The chosen :class:`ExportChoice` (None for an image, or when the size is invalid).
    """
    with st.expander(f"Export {file_stem(name)}", expanded=expanded):
        if isinstance(panel, np.ndarray):
            download_buttons(panel, name=name, key=key, choice=None)
            return None
        choice = export_options(key=key)
        download_buttons(panel, name=name, key=key, choice=choice)
        png_preview(panel, choice, key=key)
        return choice
