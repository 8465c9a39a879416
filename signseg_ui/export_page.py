"""The Export page's panels of one model: every kind of
:data:`~signseg_ui.export_widgets.PANEL_KINDS`, built from cached tables, stored sweeps and stored
units, or the reason it is missing with the command that computes it; one panel's downloads and
preview, and several panels as one zip."""

from __future__ import annotations

import base64
import dataclasses
import html

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from signseg_core.figures.compare import alpha_strip
from signseg_core.figures.export import ExportSize, export_layout, image_png
from signseg_core.figures.plots import (
    channel_ranking_figure,
    layer_dale_figure,
    metric_vs_alpha_figure,
    readout_dale_histogram,
)
from signseg_core.sweeps.run import summarize
from signseg_core.sweeps.stored import sweep_command, visualize_command
from signseg_core.sweeps.tables import METRIC_LABELS

from .cached_models import cached_model
from .compare import stored_sweep
from .dale_tables import channel_ranking, dale_layer_table
from .explorer import stored_unit
from .export_widgets import (
    ExportChoice,
    download_buttons,
    png_preview,
    zip_later,
)

#: Panels the Export page offers for the session's model: kind → label (built by
#: :func:`model_panels`).
PANEL_KINDS = {
    "dale_hist": "Readout Dale index histogram",
    "dale_layers": "Mean Dale index per layer",
    "ranking": "Channel ranking of a layer",
    "metric": "Sweep metric against α (stored results)",
    "strip": "Image strip of a stored unit",
}


#: Thumbnail sides (px) the strip panel offers; the default is the explorer's export size.
STRIP_TILES = (112, 160, 224, 320)
DEFAULT_STRIP_TILE = 160
#: The interactive preview's size when the export size is invalid.
SCREEN_SIZE = ExportSize(width_px=700, height_px=525)


def parse_panel_kind(raw: str) -> str:
    """``?panel=`` → a key of :data:`PANEL_KINDS`; ValueError naming the choices otherwise."""
    if raw not in PANEL_KINDS:
        raise ValueError(f"unknown panel {raw!r}; choose from {list(PANEL_KINDS)}")
    return raw


@dataclasses.dataclass(frozen=True)
class Panel:
    """One exportable panel: a figure or uint8 image, or why it is not available here
    (``missing``) with the CLI ``command`` that computes it."""

    kind: str
    stem: str
    content: go.Figure | np.ndarray | None
    missing: str = ""
    command: str = ""

    def __post_init__(self):
        if self.kind not in PANEL_KINDS:
            raise ValueError(f"unknown panel kind {self.kind!r}; choose from {list(PANEL_KINDS)}")
        if (self.content is None) == (not self.missing):
            raise ValueError("a panel has either content or a reason it is missing, not both")


def model_panels(name: str, *, layer: str, metric: str, unit: int, spec,
                 tile: int = DEFAULT_STRIP_TILE) -> dict[str, Panel]:
    """Every panel of :data:`PANEL_KINDS` for model ``name``: ``layer``'s channel ranking,
    ``metric`` against alpha from the stored sweep ``spec`` (its models are ignored), and the
    alpha strip of ``unit``'s stored conditions at ``spec.settings`` with ``tile``-px images.
    Nothing is computed that is not cheap: missing sweeps and units come back as panels with
    ``missing`` and ``command``.
    """
    model = cached_model(name)
    panels = {
        "dale_hist": Panel("dale_hist", f"{name}_readout_dale_hist",
                           readout_dale_histogram(model)),
        "dale_layers": Panel("dale_layers", f"{name}_layer_dale", layer_dale_figure(
            dale_layer_table(name), title=f"Mean Dale index per layer, {name}")),
        "ranking": Panel("ranking", f"{name}_{layer}_ranking", channel_ranking_figure(
            channel_ranking(name, layer), title=f"Sender channels of {layer}, {name}")),
    }
    if spec is None:
        why = "the sweep settings above do not parse"
        panels.update({k: Panel(k, k, None, why) for k in ("metric", "strip")})
        return panels
    spec = dataclasses.replace(spec, models=(name,))
    stored = stored_sweep(spec)
    if name in stored.found:
        panels["metric"] = Panel("metric", f"{name}_{metric}_vs_alpha", metric_vs_alpha_figure(
            summarize(stored.table), metric, y_title=METRIC_LABELS.get(metric, metric),
            title=f"{METRIC_LABELS.get(metric, metric)} vs ablation strength, {name}"))
    else:
        panels["metric"] = Panel("metric", f"{name}_{metric}_vs_alpha", None,
                                 stored.coverage.reason.iloc[0], sweep_command(spec))
    found = stored_unit(name, unit, spec.settings)
    if found:
        panels["strip"] = Panel("strip", f"{name}_unit{unit}_strip",
                                alpha_strip(list(found.values()), tile=tile))
    else:
        panels["strip"] = Panel("strip", f"{name}_unit{unit}_strip", None,
                                f"unit {unit} of {name} has no stored conditions at these "
                                "settings (the Ablation explorer computes them too)",
                                visualize_command(name, [unit], spec.settings))
    return panels


def show_strip(image: np.ndarray, *, name: str) -> None:
    """An image strip at its own size (one image pixel per screen pixel), scrolling sideways
    when wider than the page, so its thumbnails stay as large as in the PNG."""
    data = base64.b64encode(image_png(image)).decode("ascii")
    height, width = image.shape[:2]
    st.html(f'<div style="overflow-x:auto;max-width:100%"><img alt="{html.escape(name)}" '
            f'src="data:image/png;base64,{data}" width="{width}" height="{height}" '
            'style="max-width:none"></div>')
    st.caption(f"{name}.png at full size ({width} × {height} px); scroll sideways for the "
               "rest. The thumbnail size above sets the PNG's too.")


def show_panel(panel: Panel, choice: ExportChoice | None) -> None:
    """One panel's download buttons (keys ``export_png`` ...) and a preview laid out as the
    export is (:func:`~signseg_core.figures.render.export_layout`: at a print size, its type,
    title and legend rows), so the preview agrees with the files; or why it is missing and the
    command that computes it."""
    if panel.content is None:
        st.info(f"Not available yet: {panel.missing}.")
        if panel.command:
            st.code(panel.command, language="bash", wrap_lines=True)
        return
    download_buttons(panel.content, name=panel.stem, key="export", choice=choice, warn=False)
    if not isinstance(panel.content, go.Figure):
        show_strip(panel.content, name=panel.stem)
        return
    png_preview(panel.content, choice, key="export")
    size = choice.size if choice is not None else SCREEN_SIZE
    st.plotly_chart(export_layout(panel.content, size), width="content", theme=None,
                    key="export_preview_fig")
    st.caption("Interactive preview laid out as the export: its size, type, title and legend "
               "rows (the PNG toggle above shows the rendered file).")


def zip_panels(panels: dict[str, Panel], choice: ExportChoice | None, *, file_name: str,
               renderable: bool) -> None:
    """A multiselect of the available panels (key ``export_zip_kinds``) and one zip of them
    (key ``export_zip_all``) in the chosen formats, with their data and a manifest.
    ``renderable``: whether figures can be rendered here (Chromium)."""
    ready = [k for k, p in panels.items() if p.content is not None]
    chosen = st.multiselect("Panels", ready, default=ready, format_func=PANEL_KINDS.get,
                            key="export_zip_kinds")
    figures = [k for k in chosen if isinstance(panels[k].content, go.Figure)]
    if figures and not renderable:
        st.caption("The zip renders its figures, which needs Chromium (see above).")
    elif choice is None or not choice.formats:
        st.info("Choose at least one format and a valid size above.")
    else:
        st.download_button(
            f"ZIP of {len(chosen)} panels ({', '.join(choice.formats)} + CSV + manifest)",
            data=zip_later({panels[k].stem: panels[k].content for k in chosen}, choice),
            file_name=file_name, mime="application/zip", key="export_zip_all",
            on_click="ignore", disabled=not chosen, type="primary")
        st.caption("Figures at the size above, image strips as they are, and manifest.json.")
