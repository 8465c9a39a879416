"""Export: any panel of the session's model as PNG, SVG and PDF at a chosen size and DPI, the data
behind it as CSV, image strips as PNG, and several panels as one zip (a whole paper figure)."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from signseg_core.sweeps.run import METRIC_COLUMNS
from signseg_core.sweeps.tables import METRIC_LABELS
from signseg_ui.common import layer_picker, model_picker, require_model, show_error, sidebar_nav
from signseg_ui.compare import SESSION, sweep_settings
from signseg_ui.explorer import DEFAULT_UNIT, remember_choice, restore_choice, unit_text
from signseg_ui.export_widgets import (
    PANEL_KINDS,
    download_buttons,
    export_options,
    model_panels,
    parse_panel_kind,
    png_preview,
    renderer_problem,
    zip_later,
)

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

col_layer, col_metric, col_unit = st.columns(3)
with col_layer:
    layer = layer_picker(model, key="export_layer", label="Layer (channel ranking)")
st.session_state.setdefault("export_metric", "similarity")
metric = col_metric.selectbox("Metric (sweep panel)", METRIC_COLUMNS, key="export_metric",
                              format_func=METRIC_LABELS.get, persist_state=SESSION)
units = list(range(model.n_classes))
if st.session_state.get("export_strip_unit") not in units:
    seen = st.session_state.get("_explorer_unit", DEFAULT_UNIT)  # the explorer's last unit
    st.session_state["export_strip_unit"] = seen if seen in units else 0
unit = col_unit.selectbox("Unit (image strip)", units, format_func=unit_text,
                          key="export_strip_unit", persist_state=SESSION)
spec = sweep_settings((name,))
try:
    panels = model_panels(name, layer=layer, metric=metric, unit=unit, spec=spec)
except Exception as exc:  # the UI layer turns engine errors into messages
    show_error(exc, context=f"Cannot build the panels of {name}")
    st.stop()

st.subheader("Format and size")
choice = export_options(key="export")
problem = renderer_problem()
if problem is not None:
    st.warning(f"{problem} The data (CSV) and image strips (PNG) can still be downloaded.")

panel = panels[kind]
st.subheader(PANEL_KINDS[kind])
if panel.content is None:
    st.info(f"Not available yet: {panel.missing}.")
    if panel.command:
        st.code(panel.command, language="bash")
else:
    download_buttons(panel.content, name=panel.stem, key="export", choice=choice, warn=False)
    if isinstance(panel.content, go.Figure):
        png_preview(panel.content, choice, key="export")
        width, height = choice.size.layout_px() if choice is not None else (700, 525)
        st.plotly_chart(go.Figure(panel.content).update_layout(width=width, height=height),
                        width="content", key="export_preview_fig")
        st.caption("Interactive preview at the export's layout size.")
    else:
        st.image(panel.content, caption=f"{panel.stem}.png")

st.subheader("A whole figure as one zip")
ready = [k for k, p in panels.items() if p.content is not None]
chosen = st.multiselect("Panels", ready, default=ready, format_func=PANEL_KINDS.get,
                        key="export_zip_kinds")
figures = [k for k in chosen if isinstance(panels[k].content, go.Figure)]
if figures and problem is not None:
    st.caption("The zip renders its figures, which needs Chromium (see above).")
elif choice is None or not choice.formats:
    st.info("Choose at least one format and a valid size above.")
else:
    st.download_button(
        f"ZIP of {len(chosen)} panels ({', '.join(choice.formats)} + CSV + manifest)",
        data=zip_later({panels[k].stem: panels[k].content for k in chosen}, choice),
        file_name=f"{name}_figure.zip", mime="application/zip", key="export_zip_all",
        on_click="ignore", disabled=not chosen, type="primary")
    st.caption("Figures at the size above, image strips as they are, and manifest.json.")
