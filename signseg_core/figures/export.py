"""Export dashboard panels for papers: a figure's data as CSV, images as PNG, whole-figure zips.

Rendering a figure to PNG/SVG/PDF is :mod:`signseg_core.figures.render`'s; its public names are
importable from here too, so a caller exporting panels needs one module.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import zipfile
from collections.abc import Mapping
from datetime import datetime, timezone

import numpy as np
import plotly.graph_objects as go

from signseg_core.figures.png import png_bytes
from signseg_core.figures.render import (
    FORMATS,
    ChromiumNotFoundError,
    ExportSize,
    chromium_path,
    export_layout,
    figure_bytes,
    render_figure,
    renderer_running,
    start_renderer,
    stop_renderer,
)
from signseg_core.store import CODE_VERSION

__all__ = [
    "FORMATS", "ChromiumNotFoundError", "ExportSize", "chromium_path", "export_layout",
    "figure_bytes", "figure_data_csv", "figure_zip", "image_png", "renderer_running",
    "start_renderer", "stop_renderer",
]


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
                    files = {f"{name}.{fmt}": render_figure(panel, fmt, size) for fmt in formats}
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
