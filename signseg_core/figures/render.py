"""Rendering Plotly figures to PNG, SVG and PDF bytes, sized for a screen or for print.

Rendering goes through kaleido 1.x and a headless Chromium. Without a running renderer each
render starts a browser (~3 s); :func:`start_renderer` keeps one shared browser (kaleido's sync
server) so renders take well under a second. Calls into it are serialised by a lock.

Sizes are pixels (``width_px``, for screens) or inches at a DPI (``width_in``, for print). For
print the layout is ``width_in * 96`` CSS pixels wide, so a 12 px font prints at 9 pt; the PNG
is rendered ``dpi / 96`` times larger (3.5 in at 300 dpi: 1050 px wide) and records its DPI,
while SVG and PDF keep the 96 px/in layout (a 3.5 in PDF page is 252 pt wide). A size in inches
also gets :func:`~signseg_core.figures.print_layout.print_layout`'s type sizes and margins.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import threading
import zlib
from pathlib import Path

import kaleido
import plotly.graph_objects as go
from choreographer.browsers.chromium import Chromium
from kaleido.errors import ChromeNotFoundError

from signseg_core.errors import SignsegError
from signseg_core.figures.print_layout import CSS_PX_PER_IN, print_layout

FORMATS = ("png", "svg", "pdf")
DPI_RANGE = (50, 1200)
MAX_PX = 10_000  # largest PNG side
MIN_LAYOUT_PX = 10  # plotly.js refuses smaller layouts
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
    return render_figure(fig, fmt, size)


def export_layout(fig: go.Figure, size: ExportSize) -> go.Figure:
    """A copy of ``fig`` laid out as :func:`render_figure` renders it at ``size`` (for a size in
    inches, :func:`~signseg_core.figures.print_layout.print_layout`'s type, title, legend rows
    and margins), with the layout's width and height: what an interactive preview should show,
    so that it agrees with the exported file."""
    if not isinstance(fig, go.Figure):
        raise TypeError(f"expected a plotly Figure; got {type(fig).__name__}")
    width, height = size.layout_px()
    fig_dict = fig.to_dict()
    if size.in_inches:
        fig_dict = print_layout(fig_dict, width, height)
    return go.Figure(fig_dict).update_layout(width=width, height=height)


def render_figure(fig: go.Figure, fmt: str, size: ExportSize) -> bytes:
    """``fig`` as ``fmt`` bytes at ``size``: print type and margins for a size in inches, and a
    PNG that records its DPI; on the shared renderer if one runs, else a browser of its own."""
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
