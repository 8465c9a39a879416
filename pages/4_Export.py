"""Export: any panel of the session's model as PNG, SVG and PDF at a chosen size and DPI, the data
behind it as CSV, image strips as PNG, and several panels as one zip (a whole paper figure)."""

from __future__ import annotations

import streamlit as st

from signseg_ui.cached_models import require_model
from signseg_ui.compare import SESSION, metric_picker, sweep_settings
from signseg_ui.error_display import show_error
from signseg_ui.explorer import last_unit, unit_text
from signseg_ui.export_page import (
    DEFAULT_STRIP_TILE,
    PANEL_KINDS,
    STRIP_TILES,
    model_panels,
    parse_panel_kind,
    show_panel,
    zip_panels,
)
from signseg_ui.export_widgets import export_options, renderer_problem
from signseg_ui.navigation import sidebar_nav
from signseg_ui.pickers import layer_picker, model_picker
from signseg_ui.widget_choices import keep_choice, remember_choice, restore_choice

st.set_page_config(page_title="Export · signseg", layout="wide")
sidebar_nav()
st.title("Export")
st.write(
    "Pick a panel, its size for print (mm at a DPI) or screen (px), and download it as PNG, SVG "
    "or PDF with the data behind it as CSV; image strips download as PNG. Several panels of one "
    "model download together as a zip with a manifest."
)

name = model_picker(key="export_model")
model = require_model(name)

restore_choice("export_kind", "panel", list(PANEL_KINDS), parse_panel_kind, "dale_hist")
kind = st.selectbox("Panel", list(PANEL_KINDS), format_func=PANEL_KINDS.get, key="export_kind")
remember_choice("export_kind", "panel", kind)

col_layer, col_metric, col_unit, col_tile = st.columns([3, 3, 3, 2])
with col_layer:
    layer = layer_picker(model, key="export_layer", label="Layer (channel ranking)")
metric = metric_picker(key="export_metric", label="Metric (sweep panel)", container=col_metric)
units = list(range(model.n_classes))
keep_choice("export_strip_unit", units, last_unit(units))  # at first the explorer's last unit
unit = col_unit.selectbox("Unit (image strip)", units, format_func=unit_text,
                          key="export_strip_unit", persist_state=SESSION)
keep_choice("export_strip_tile", STRIP_TILES, DEFAULT_STRIP_TILE)
tile = col_tile.select_slider("Strip thumbnails (px)", STRIP_TILES, key="export_strip_tile",
                              persist_state=SESSION)
spec = sweep_settings((name,))
try:
    panels = model_panels(name, layer=layer, metric=metric, unit=unit, spec=spec, tile=tile)
except Exception as exc:  # the UI layer turns engine errors into messages
    show_error(exc, context=f"Cannot build the panels of {name}")
    st.stop()

st.subheader("Format and size")
choice = export_options(key="export")
problem = renderer_problem()
if problem is not None:
    st.warning(f"{problem} The data (CSV) and image strips (PNG) can still be downloaded.")

st.subheader(PANEL_KINDS[kind])
show_panel(panels[kind], choice)

st.subheader("A whole figure as one zip")
zip_panels(panels, choice, file_name=f"{name}_figure.zip", renderable=problem is None)
