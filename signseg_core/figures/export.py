"""Export dashboard panels for papers: PNG/SVG/PDF files, their data as CSV, and whole-figure zips.

Rendering goes through kaleido 1.x and a headless Chromium. Without a running renderer each
render starts a browser (~3 s); :func:`start_renderer` keeps one shared browser (kaleido's sync
server) so renders take well under a second. Calls into it are serialised by a lock.

Sizes are pixels (``width_px``, for screens) or inches at a DPI (``width_in``, for print). For
print the layout is ``width_in * 96`` CSS pixels wide, so a 12 px font prints at 9 pt; the PNG
is rendered ``dpi / 96`` times larger (3.5 in at 300 dpi: 1050 px wide) and records its DPI,
while SVG and PDF keep the 96 px/in layout (a 3.5 in PDF page is 252 pt wide).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import struct
import threading
import zipfile
import zlib
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import kaleido
import numpy as np
import plotly.graph_objects as go
from choreographer.browsers.chromium import Chromium
from kaleido.errors import ChromeNotFoundError

from signseg_core.errors import SignsegError
from signseg_core.figures.png import png_bytes

FORMATS = ("png", "svg", "pdf")
DPI_RANGE = (50, 1200)
MAX_PX = 10_000  # largest PNG side
MIN_LAYOUT_PX = 10  # plotly.js refuses smaller layouts
CSS_PX_PER_IN = 96
DEFAULT_ASPECT = 0.75  # height / width when only a width is given
_LOCK = threading.RLock()


class ChromiumNotFoundError(SignsegError, RuntimeError):
    """Figures cannot be rendered: no Chromium/Chrome executable was found."""

    def __init__(self, detail: str = ""):
        msg = ("Exporting figures needs Chromium, which was not found on this machine: install it "
               "with `apt-get install chromium` (Debian/Ubuntu), or run `kaleido_get_chrome`, or "
               "set BROWSER_PATH to a Chrome/Chromium executable.")
        super().__init__(msg + (f" ({detail})" if detail else ""))


@dataclasses.dataclass(frozen=True)
class ExportSize:
    """The size of an exported panel: CSS pixels (screen) or inches at ``dpi`` (print).

    Give ``width_px``/``height_px`` (the PNG is ``scale`` times larger, default 1) or
    ``width_in``/``height_in`` with ``dpi`` in [50, 1200] (then no ``scale``). A missing height
    is 3/4 of the width; nothing given means 700 px wide. PNG sides are at most 10000 px.
    """

    width_px: float | None = None
    height_px: float | None = None
    width_in: float | None = None
    height_in: float | None = None
    dpi: float = 300
    scale: float | None = None

    def __post_init__(self):
        for name in ("width_px", "height_px", "width_in", "height_in", "scale"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0
                                          and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number; got {value!r}")
        if (self.width_px, self.height_px) != (None, None) and self.width_in is not None:
            raise ValueError("give the size in pixels (width_px, height_px) or in inches "
                             f"(width_in, height_in), not both; got {self}")
        if self.height_in is not None and self.width_in is None:
            raise ValueError(f"height_in={self.height_in} needs width_in too")
        if not (isinstance(self.dpi, (int, float)) and DPI_RANGE[0] <= self.dpi <= DPI_RANGE[1]):
            raise ValueError(f"dpi must be in [{DPI_RANGE[0]}, {DPI_RANGE[1]}]; got {self.dpi!r}")
        if self.in_inches and self.scale is not None:
            raise ValueError(f"scale={self.scale} is for pixel sizes; with width_in the PNG "
                             "resolution is set by dpi")
        (w, h), (lw, lh) = self.png_pixels(), self.layout_px()
        if max(w, h) > MAX_PX:
            raise ValueError(f"the PNG would be {w} x {h} px; each side must be at most {MAX_PX}")
        if min(lw, lh) < MIN_LAYOUT_PX:
            raise ValueError(f"the layout would be {lw:g} x {lh:g} CSS px; each side must be at "
                             f"least {MIN_LAYOUT_PX}")

    @property
    def in_inches(self) -> bool:
        return self.width_in is not None

    def layout_px(self) -> tuple[float, float]:
        """The figure's layout (width, height) in CSS pixels; also the SVG/PDF size at 96/in."""
        if self.in_inches:
            h_in = self.height_in if self.height_in is not None else self.width_in * DEFAULT_ASPECT
            return self.width_in * CSS_PX_PER_IN, h_in * CSS_PX_PER_IN
        w = self.width_px if self.width_px is not None else 700
        return w, self.height_px if self.height_px is not None else w * DEFAULT_ASPECT

    def png_scale(self) -> float:
        """PNG pixels per layout pixel: ``dpi / 96`` in inches, else ``scale`` (default 1)."""
        return self.dpi / CSS_PX_PER_IN if self.in_inches else (self.scale or 1.0)

    def png_pixels(self) -> tuple[int, int]:
        """The PNG's (width, height) in pixels: the layout size times the scale, rounded."""
        s = self.png_scale()
        return tuple(int(math.floor(v * s + 0.5)) for v in self.layout_px())

    def render_opts(self, fmt: str) -> dict:
        """kaleido's ``opts`` (format, layout width/height, scale) for ``fmt``."""
        if fmt != "png":  # vector: the 96 px/in layout, so a PDF page has the asked size
            lw, lh = self.layout_px()
            return {"format": fmt, "width": lw, "height": lh, "scale": 1}
        (w, h), s = self.png_pixels(), self.png_scale()
        # the browser truncates width * scale; a quarter pixel more keeps the rounded size
        return {"format": fmt, "width": (w + 0.25) / s, "height": (h + 0.25) / s, "scale": s}


def chromium_path() -> str | None:
    """The Chromium/Chrome executable kaleido would use (``$BROWSER_PATH`` first), or None."""
    path = Chromium.find_browser(skip_local=False)
    return str(path) if path and Path(path).is_file() else None


def renderer_running() -> bool:
    """Whether a shared renderer (kaleido's sync server) is running."""
    return kaleido._global_server.is_running()  # the singleton behind start_sync_server


def start_renderer() -> None:
    """Start the shared renderer unless one runs (idempotent, thread-safe, ~3 s); raises
    ``ChromiumNotFoundError``, saying how to install it, if there is no Chromium."""
    with _LOCK:
        if renderer_running():
            return
        if chromium_path() is None:
            raise ChromiumNotFoundError()
        kaleido.start_sync_server(mathjax=False, silence_warnings=True)
        try:  # a browser that fails to launch kills the server's thread: find out now
            _server_render(go.Figure().to_dict(), ExportSize(width_px=20).render_opts("png"))
        except BaseException:
            stop_renderer()
            raise


def stop_renderer() -> None:
    """Stop the shared renderer if one runs (idempotent, thread-safe)."""
    with _LOCK:
        if renderer_running():
            kaleido.stop_sync_server(silence_warnings=True)


def _server_render(fig_dict: dict, opts: dict) -> bytes:
    """Render on the shared server. If its thread has died (a browser that failed to launch),
    stop it and render with a browser of its own, which raises the real error."""
    server, box = kaleido._global_server, {}
    thread = getattr(server, "_thread", None)

    def call():
        try:
            box["out"] = server.call_function("calc_fig", fig_dict, opts=opts)
        except BaseException as err:  # noqa: BLE001 re-raised in the caller's thread
            box["err"] = err

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    while worker.is_alive() and (thread is None or thread.is_alive()):
        worker.join(0.05)  # kaleido times each render out after 90 s, so this ends
    if worker.is_alive():  # the dead server never answers; the parked worker is a daemon
        server.close(silence_warnings=True)
        return _oneshot_render(fig_dict, opts)
    if "err" in box:
        raise box["err"]
    return box["out"]


def _oneshot_render(fig_dict: dict, opts: dict) -> bytes:
    with _LOCK:  # so no server starts meanwhile (calc_fig_sync would use it)
        return kaleido.calc_fig_sync(fig_dict, opts=opts, kopts={"mathjax": False})


def _png_with_dpi(png: bytes, dpi: float) -> bytes:
    """Insert a pHYs chunk (pixels per metre) after IHDR, so programs print it at ``dpi``."""
    ppm = int(round(dpi / 0.0254))
    body = b"pHYs" + struct.pack(">IIB", ppm, ppm, 1)
    end_ihdr = 8 + 4 + 4 + 13 + 4  # signature, length, type, IHDR data, crc
    chunk = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body))
    return png[:end_ihdr] + chunk + png[end_ihdr:]


def figure_bytes(fig: go.Figure, fmt: str, *, width_px: float | None = None,
                 height_px: float | None = None, width_in: float | None = None,
                 height_in: float | None = None, dpi: float = 300,
                 scale: float | None = None) -> bytes:
    """Render a Plotly figure to ``"png"``, ``"svg"`` or ``"pdf"`` bytes, sized as in
    :class:`ExportSize`, on the shared renderer if one runs, else on a browser of its own.

    Raises ``ValueError`` for a bad format or size, ``ChromiumNotFoundError`` without Chromium.
    """
    size = ExportSize(width_px=width_px, height_px=height_px, width_in=width_in,
                      height_in=height_in, dpi=dpi, scale=scale)
    return _render(fig, fmt, size)


#: Print type sizes in points (a journal figure's text is 6-9 pt at its printed size).
PRINT_PT = {"base": 7.0, "title": 8.0, "legend": 6.5, "tick": 6.5}


def _pt(points: float) -> float:
    """Points → CSS px of the layout (a print layout is 96 px per printed inch)."""
    return points * CSS_PX_PER_IN / 72


def _wrap(text: str, width_px: float, font_px: float) -> list[str]:
    """``text`` (Plotly's ``<br>`` allowed) broken into lines that fit ``width_px``."""
    import textwrap

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
    import copy

    out = copy.deepcopy(fig_dict)
    lay = out.setdefault("layout", {})
    lay["font"] = {**lay.get("font", {}), "size": _pt(PRINT_PT["base"])}
    top = 6.0
    title = lay.get("title") or {}
    text = title.get("text") if isinstance(title, dict) else str(title)
    if text:
        font = _pt(PRINT_PT["title"])
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
        font = _pt(PRINT_PT["legend"])
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
        axis.update({"automargin": True, "tickfont": {"size": _pt(PRINT_PT["tick"])}})
        lay[key] = axis
    for axis in ("xaxis", "yaxis"):
        lay.setdefault(axis, {"automargin": True, "tickfont": {"size": _pt(PRINT_PT["tick"])}})
    lay.pop("height", None)
    lay.pop("width", None)
    return out


def _render(fig: go.Figure, fmt: str, size: ExportSize) -> bytes:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {list(FORMATS)}")
    if not isinstance(fig, go.Figure):
        raise TypeError(f"expected a plotly Figure; got {type(fig).__name__}")
    fig_dict, opts = fig.to_dict(), size.render_opts(fmt)
    if size.in_inches:  # a print size: print type, margins and legend placement
        fig_dict = print_layout(fig_dict, *size.layout_px())
    try:
        with _LOCK:
            out = (_server_render if renderer_running() else _oneshot_render)(fig_dict, opts)
    except ChromeNotFoundError as err:
        raise ChromiumNotFoundError(str(err)) from err
    return _png_with_dpi(out, size.dpi) if fmt == "png" and size.in_inches else out


def _get(obj, prop: str):
    return obj[prop] if obj is not None and prop in obj else None


def _list(values) -> list:
    return [] if values is None else list(values)


def _cell(value) -> str:
    value = value.item() if isinstance(value, np.generic) else value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)  # repr: floats round-trip


def _errors(trace, axis: str, n: int) -> dict[str, list]:
    """Error-bar half-lengths (minus, plus) per point, for bars given as data or a constant."""
    err = _get(trace, f"error_{axis}")
    if err is None or err.visible is False or err.type not in (None, "data", "constant"):
        return {}
    if err.type == "constant":
        minus = err.value if err.valueminus is None or err.symmetric else err.valueminus
        return {f"error_{axis}_minus": [minus] * n, f"error_{axis}_plus": [err.value] * n}
    if err.array is None:
        return {}
    plus = _list(err.array)
    minus = plus if err.arrayminus is None or err.symmetric else _list(err.arrayminus)
    return {f"error_{axis}_minus": minus, f"error_{axis}_plus": plus}


def _band_rows(i: int, trace, traces) -> list[dict]:
    x, y, name, fill = _list(trace.x), _list(trace.y), trace.name, trace.fillcolor
    if not name:  # the curve drawn in the band's colour owns it
        owners = [t.name for t in traces if t.name and _get(t, "fill") != "toself"
                  and fill is not None and fill in (_get(_get(t, "line"), "color"),
                                                    _get(_get(t, "marker"), "color"))]
        name = owners[0] if owners else f"band {i}"
    k, base = len(x) // 2, {"trace": i, "name": name, "role": "band"}
    if len(x) == len(y) == 2 * k and x[k:] == x[:k][::-1]:  # upper edge, then lower reversed
        return [{**base, "x": x[j], "y_low": min(y[j], y[-1 - j]),
                 "y_high": max(y[j], y[-1 - j])} for j in range(k)]
    return [{**base, "x": a, "y": b} for a, b in zip(x, y)]


def _trace_rows(i: int, trace, traces) -> list[dict]:
    base = {"trace": i, "name": trace.name or ""}
    if trace.type == "histogram":  # the raw samples; the bins are the figure's business
        axis = "x" if trace.x is not None else "y"
        return [{**base, "role": "histogram", axis: v} for v in _list(trace[axis])]
    if _get(trace, "fill") == "toself":
        return _band_rows(i, trace, traces)
    if "x" not in trace or "y" not in trace or _get(trace, "z") is not None:
        raise ValueError(f"cannot export the data of a {trace.type!r} trace ({trace.name!r}); "
                         "supported: x/y traces (scatter, bar, ...) and histograms")
    x, y = trace.x, trace.y
    if x is None and y is None:
        return []
    x = _list(x) if x is not None else list(range(len(y)))  # plotly's default x0=0, dx=1
    y = _list(y) if y is not None else list(range(len(x)))
    if len(x) != len(y):
        raise ValueError(f"trace {i} ({trace.name!r}) has {len(x)} x but {len(y)} y values")
    cols = {"x": x, "y": y, **_errors(trace, "y", len(y)), **_errors(trace, "x", len(x))}
    return [{**base, "role": "points", **{c: v[j] for c, v in cols.items()}}
            for j in range(len(x))]


_COLUMNS = ("trace", "name", "role", "x", "y", "y_low", "y_high", "error_y_minus",
            "error_y_plus", "error_x_minus", "error_x_plus")


def figure_data_csv(fig: go.Figure) -> bytes:
    """The data behind a Plotly figure as tidy UTF-8 CSV, one row per point.

    Columns ``trace`` (index), ``name``, ``role``, ``x``, ``y``, plus, where any trace has them,
    ``y_low``/``y_high`` and ``error_{y,x}_{minus,plus}`` (error-bar half-lengths). Roles:
    ``points`` (scatter/bar points), ``histogram`` (one row per raw sample, in ``x`` or ``y``),
    ``band`` (a ``fill="toself"`` band decoded to ``y_low``/``y_high`` per x, named after the
    curve drawn in its colour). Floats are written exactly; layout shapes (``add_hline``) are
    not data and are left out. Raises ``ValueError`` for traces without x/y data (heatmaps).
    """
    if not isinstance(fig, go.Figure):
        raise TypeError(f"expected a plotly Figure; got {type(fig).__name__}")
    rows = [r for i, t in enumerate(fig.data) for r in _trace_rows(i, t, fig.data)]
    used = {k for r in rows for k in r}
    columns = [c for c in _COLUMNS if c in _COLUMNS[:5] or c in used]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell(r.get(c)) for c in columns] for r in rows)
    return buf.getvalue().encode("utf-8")


def _check_image(image) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0):
        got = (f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray)
               else type(image).__name__)
        raise ValueError(f"expected a uint8 (H, W, 3) image; got {got}")


def image_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W, 3) RGB image, e.g.
    :func:`signseg_core.figures.plots.image_strip`."""
    _check_image(image)
    return png_bytes(np.ascontiguousarray(image))


_PANEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _check_zip_args(panels, formats: tuple, size) -> None:
    if not formats or len(set(formats)) != len(formats) or set(formats) - set(FORMATS):
        raise ValueError(f"formats must be distinct values from {list(FORMATS)}; got {formats}")
    if not isinstance(size, ExportSize):
        raise TypeError(f"size must be an ExportSize; got {type(size).__name__}")
    if not panels:
        raise ValueError("no panels to export")
    for name, panel in panels.items():
        if not (isinstance(name, str) and _PANEL_NAME.fullmatch(name)) or name == "manifest":
            raise ValueError(f"bad panel name {name!r}: use letters, digits, '_', '-', '.', "
                             "starting with a letter or digit, and not 'manifest'")
        if isinstance(panel, np.ndarray):
            _check_image(panel)
        elif not isinstance(panel, go.Figure):
            raise TypeError(f"panel {name!r} must be a plotly Figure or a uint8 (H, W, 3) "
                            f"array; got {type(panel).__name__}")


def figure_zip(panels: Mapping[str, go.Figure | np.ndarray], *, formats=FORMATS,
               size: ExportSize = ExportSize(width_in=3.5), data: bool = True) -> bytes:
    """A zip of a whole paper figure: every panel in every format, its data, and a manifest.

    A figure gives ``<name>.<fmt>`` per format and ``<name>.csv`` (if ``data``); a uint8
    (H, W, 3) image gives ``<name>.png``. ``manifest.json`` lists panels, files and sizes,
    ``size``, the engine's ``CODE_VERSION`` and a UTC timestamp. The default size is a 3.5 in
    single column at 300 dpi. Starts a renderer for the call if none runs (and stops it after).
    """
    from signseg_core.store import CODE_VERSION

    formats = tuple(formats)
    _check_zip_args(panels, formats, size)
    started = any(isinstance(p, go.Figure) for p in panels.values()) and not renderer_running()
    if started:
        start_renderer()
    buf, entries = io.BytesIO(), []
    try:
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, panel in panels.items():
                if isinstance(panel, np.ndarray):
                    files = {f"{name}.png": image_png(panel)}
                    info = {"kind": "image", "png_px": [panel.shape[1], panel.shape[0]]}
                else:
                    files = {f"{name}.{fmt}": _render(panel, fmt, size) for fmt in formats}
                    if data:
                        files[f"{name}.csv"] = figure_data_csv(panel)
                    info = {"kind": "figure", "layout_px": list(size.layout_px()),
                            "png_px": list(size.png_pixels()) if "png" in formats else None}
                for file_name, blob in files.items():
                    zf.writestr(file_name, blob)
                entries.append({"name": name, **info, "files": list(files)})
            manifest = {"signseg_code_version": CODE_VERSION,
                        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "formats": list(formats), "size": dataclasses.asdict(size),
                        "data": data, "panels": entries}
            zf.writestr("manifest.json", json.dumps(manifest, indent=2))
    finally:
        if started:
            stop_renderer()
    return buf.getvalue()
