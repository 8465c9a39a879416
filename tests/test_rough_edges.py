"""Issue 12, item 5: the rough edges, one test each.

* the Export page keeps the sweep settings chosen on Compare models (first visit of a session);
* exports at the default 89 mm: a one-line title, a horizontal legend in packed rows, and an
  interactive preview laid out as the file is;
* image strips say ``α = 0.5`` and what their numbers are;
* the explorer's figures have titles;
* Compare models: red/blue signs, a wrapped command, a caption ending in one full stop;
* a flat grey channel visualization gets a warning;
* the home page points a newcomer to the explorer.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from apptest_helpers import ROOT, needs_chromium
from PIL import Image
from streamlit.testing.v1 import AppTest

from signseg_core.figures import compare as compare_figures
from signseg_core.figures.export import ExportSize, export_layout, figure_bytes
from signseg_core.figures.image_checks import (
    FLAT_STD,
    flat_indices,
    flat_warning,
    is_flat,
    pixel_std,
)
from signseg_core.figures.plots import (
    activation_vs_alpha_figure,
    dale_histogram_figure,
    metric_vs_alpha_figure,
    spectrum_ratio_figure,
    unit_metric_vs_alpha_figure,
)
from signseg_core.figures.print_layout import (
    LEGEND_ROW_PX,
    MARGIN,
    PLOT_LEFT_PX,
    PRINT_PT,
    legend_entries,
    pack_legend,
    print_layout,
    pt_to_px,
    text_width,
)
from signseg_core.figures.strips import image_strip, strip_font
from signseg_core.optimize.results import ConditionResult
from signseg_core.optimize.settings import ConditionKey
from signseg_ui.compare import full_stop, metric_setup_note

#: The default export: a single column, 89 x 67 mm at 300 dpi.
COLUMN = ExportSize(width_in=89 / 25.4, height_in=67 / 25.4, dpi=300)
LONG_TITLE = "Ensemble similarity to control vs ablation strength, efficientnet_lite0"


def _summary() -> pd.DataFrame:
    mean = [0.9, 0.6, 0.25, 0.9, 0.8, 0.7]
    return pd.DataFrame({"sign": ["positive"] * 3 + ["negative"] * 3,
                         "alpha": [0.0, 0.5, 1.0] * 2, "m": mean,
                         "m_ci_low": [v - 0.1 for v in mean],
                         "m_ci_high": [v + 0.1 for v in mean]})


def _changes(models: list[str]) -> pd.DataFrame:
    rows = []
    for i, model in enumerate(models):
        for sign in ("positive", "negative"):
            for alpha in (0.0, 0.5, 1.0):
                d = -0.1 * (i + 1) * alpha
                rows.append({"model": model, "sign": sign, "alpha": alpha, "eps": float(i),
                             "delta": d, "delta_ci_low": d - 0.05, "delta_ci_high": d + 0.05,
                             "mean": 0.5 + d, "mean_ci_low": 0.45 + d, "mean_ci_high": 0.55 + d})
    return pd.DataFrame(rows)


def _result(sign: str, alpha: float, score: float, unit: int = 3) -> ConditionResult:
    key = ConditionKey("m", "f", unit, sign, alpha, "fourier", "g", "{}", 1, 2, 0, "fp32")
    images = np.full((2, 4, 4, 3), 100, np.uint8)
    return ConditionResult(key, images, np.array([score, score / 2]), np.zeros(2),
                           np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((2, 1), np.float32),
                           np.zeros((2, 1), np.float32))


# -- 1. Compare models → Export keeps the sweep settings ---------------------------------------

@pytest.mark.usefixtures("tiny_dashboard")
def test_export_keeps_the_sweep_settings_chosen_on_compare_in_a_fresh_session():
    """Streamlit gives the form's widgets new ids on the Export page; on its first visit they
    used to start (and be sent to the browser) at their defaults: generations and restarts 1,
    units, α and ensemble empty, and the page said "Sweep settings: give at least one unit"."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.query_params["models"] = "tiny_test"
    at.switch_page("pages/3_Compare_models.py").run()
    assert not at.exception, at.exception
    at.text_input(key="sweep_units").set_value("1 2")
    at.number_input(key="sweep_generations").set_value(30)
    at.button(key="sweep_apply").click().run()
    at.switch_page("pages/4_Export.py").run()  # the first visit of Export in this session
    assert not at.exception, at.exception
    assert not [e.value for e in at.error if "Sweep settings" in e.value]
    # what the browser is told to show (AppTest's .value reads the state after the run)
    units = at.text_input(key="sweep_units").proto
    assert units.set_value and units.value == "1 2"
    generations = at.number_input(key="sweep_generations").proto
    assert generations.set_value and generations.value == 30
    restarts = at.number_input(key="sweep_restarts").proto
    assert restarts.value == 5 and at.text_input(key="sweep_alphas").proto.value == "0:1:0.1"
    ensemble = at.multiselect(key="sweep_ensemble")
    assert ensemble.proto.set_value and list(ensemble.value)
    at.switch_page("pages/3_Compare_models.py").run()  # and back again
    assert at.text_input(key="sweep_units").proto.value == "1 2"
    assert at.number_input(key="sweep_generations").value == 30


# -- 2. exports at 89 mm -----------------------------------------------------------------------

def test_legend_rows_pack_entries_as_plotly_draws_one_row():
    font = pt_to_px(PRINT_PT["legend"])
    names = ["channels", "mean 0.5114", "untrained expectation 0.5126"]
    room = 336 - MARGIN["r"] - PLOT_LEFT_PX
    rows = pack_legend(names, font, room)
    assert rows == [[0, 1], [2]]  # plotly's own wrapping would give each entry a row
    for row in rows:  # every row fits the plot's width: plotly.js draws it as one row
        assert 10 + sum(40 + text_width(names[i], font) + 5 for i in row) <= room
    assert pack_legend(names, font, 2000) == [[0, 1, 2]]
    assert pack_legend(["a very long name indeed"] * 2, font, 50) == [[0], [1]]


@pytest.mark.parametrize("fig", [
    dale_histogram_figure(np.linspace(0.5, 0.6, 50), expected_untrained=0.5126,
                          title="Readout Dale index per penultimate channel, efficientnet_lite0"),
    metric_vs_alpha_figure(_summary(), "m", title=LONG_TITLE, y_title="similarity"),
    compare_figures.family_curves_figure(
        _changes(["resnet50", "resnet50_l2_eps1", "resnet50_linf_eps4"])),
    compare_figures.change_vs_model_figure(_changes(["a", "b"]), alpha=1.0),
], ids=["histogram", "metric", "family_curves", "change_vs_model"])
def test_a_single_column_export_has_a_one_line_title_and_a_compact_horizontal_legend(fig):
    width, height = COLUMN.layout_px()
    out = print_layout(fig.to_dict(), width, height)
    lay = out["layout"]
    title = lay.get("title", {}).get("text", "")
    if title:  # one line, at 7-8 pt, within the width
        assert "<br>" not in title
        assert pt_to_px(PRINT_PT["title_min"]) - 0.1 <= lay["title"]["font"]["size"] <= \
            pt_to_px(PRINT_PT["title"])
        assert text_width(title, lay["title"]["font"]["size"]) <= width - 12
    legends = sorted((k for k in lay if k.startswith("legend")), key=lambda k: (len(k), k))
    entries = legend_entries(fig.to_dict())
    assert legends and all(lay[k]["orientation"] == "h" for k in legends)
    # packed: each row holds what fits the plot's width, and could not take the next entry
    font, room = pt_to_px(PRINT_PT["legend"]), width - MARGIN["r"] - PLOT_LEFT_PX
    names = [[name for i, name in entries if out["data"][i]["legend"] == k] for k in legends]
    label = (lay["legend"].get("title") or {}).get("text", "")
    used = [10 + sum(45 + text_width(n, font) for n in row)
            + (text_width(label, font) + 10 if r == 0 and label else 0)
            for r, row in enumerate(names)]
    assert all(u <= room or len(row) == 1 for u, row in zip(used, names))
    assert all(u + 45 + text_width(nxt[0], font) > room for u, nxt in zip(used, names[1:]))
    # between the title and the plot: under the title, rows one above the other, all inside
    # the top margin
    tops = [(1 - lay[k]["y"]) * height for k in legends]
    assert tops == sorted(tops) and tops[0] >= (1.3 * lay["title"]["font"]["size"] if title
                                                else 0)
    assert tops[-1] + LEGEND_ROW_PX <= lay["margin"]["t"]
    if len(entries) <= 3:  # the plot keeps most of the panel
        assert lay["margin"]["t"] < height / 3
    assert {t.get("legend") for t in out["data"] if "legend" in t} == set(legends)


def test_the_interactive_preview_is_laid_out_as_the_export():
    fig = metric_vs_alpha_figure(_summary(), "m", title=LONG_TITLE)
    preview = export_layout(fig, COLUMN)
    width, height = COLUMN.layout_px()
    printed = go.Figure(print_layout(fig.to_dict(), width, height))
    assert preview.layout.width == pytest.approx(width)
    assert preview.layout.height == pytest.approx(height)
    assert preview.layout.title == printed.layout.title
    assert preview.layout.margin == printed.layout.margin
    assert preview.layout.legend == printed.layout.legend
    screen = export_layout(fig, ExportSize(width_px=700, height_px=525))
    assert screen.layout.title.text == LONG_TITLE and screen.layout.width == 700


@pytest.mark.usefixtures("tiny_dashboard")
def test_the_export_pages_preview_is_the_print_layout():
    at = AppTest.from_file(str(ROOT / "pages" / "4_Export.py"), default_timeout=120)
    at.session_state["sweep_units"] = "1"
    at.run()
    assert not at.exception, at.exception
    chart = [c for c in at.get("plotly_chart") if c.proto.id.endswith("export_preview_fig")][0]
    spec = json.loads(chart.proto.spec)["layout"]
    width, height = COLUMN.layout_px()
    assert spec["width"] == pytest.approx(width) and spec["height"] == pytest.approx(height)
    assert spec["title"]["font"]["size"] <= pt_to_px(PRINT_PT["title"])
    assert spec["legend"]["orientation"] == "h" and spec["margin"]["l"] == MARGIN["l"]
    assert chart.proto.theme == ""  # Streamlit's theme would restyle it unlike the file


@needs_chromium
def test_the_exported_png_has_the_plot_below_the_legend():
    """Rendered: nothing of the plot's background is in the top margin the layout reserved."""
    fig = dale_histogram_figure(np.linspace(0.5, 0.6, 50), expected_untrained=0.5126,
                                title="Readout Dale index per penultimate channel, tiny_test")
    fig.update_layout(plot_bgcolor="#E5ECF6")  # whatever template the process made default
    png = np.asarray(Image.open(io.BytesIO(figure_bytes(
        fig, "png", width_in=COLUMN.width_in, height_in=COLUMN.height_in, dpi=300)))
        .convert("RGB")).astype(int)
    plot_bg = np.abs(png - [229, 236, 246]).sum(-1) < 6  # plotly's #E5ECF6
    first_row = np.where(plot_bg.sum(1) > png.shape[1] // 4)[0][0]
    width, height = COLUMN.layout_px()
    top = print_layout(fig.to_dict(), width, height)["layout"]["margin"]["t"]
    assert first_row >= top * COLUMN.png_scale() - 2
    assert first_row < png.shape[0] / 3


# -- 3. strips: α and what the numbers are -----------------------------------------------------

def test_alpha_strip_captions_say_alpha_and_act_and_a_note_says_what_act_is(monkeypatch):
    got = {}
    monkeypatch.setattr(compare_figures, "image_strip",
                        lambda rows, **kw: got.update(rows=rows, **kw) or np.zeros((1, 1, 3)))
    compare_figures.alpha_strip([_result("control", 0.0, 12.34), _result("positive", 0.5, 3.21)])
    captions = [c for _, c in got["rows"]["positive ablated"]]
    assert captions == ["α = 0\nact 12.3", "α = 0.5\nact 3.21"]
    assert got["note"].startswith("act: the unit's activation")


def test_strip_captions_are_drawn_in_a_font_with_greek():
    font, greek = strip_font(12)
    if not greek:
        pytest.skip("no TrueType font with Greek letters on this machine")
    alpha, a = (np.asarray(font.getmask(c)) for c in ("α", "a"))
    assert alpha.shape and not np.array_equal(alpha, a)
    one = image_strip({"row": [(np.zeros((4, 4, 3), np.uint8), "α = 0.5\nact 1")]}, tile=8)
    noted = image_strip({"row": [(np.zeros((4, 4, 3), np.uint8), "α = 0.5\nact 1")]}, tile=8,
                        note="act: activation " * 4)
    assert noted.shape[1] == one.shape[1] and noted.shape[0] > one.shape[0]  # wrapped note


# -- 4. the explorer's figures have titles -----------------------------------------------------

def test_the_explorers_figures_have_default_titles_and_can_go_without():
    rows = pd.DataFrame({"model": "lite0", "unit": 373, "sign": ["control", "positive"],
                         "alpha": [0.0, 0.5], "similarity": [1.0, 0.8]})
    fig = unit_metric_vs_alpha_figure(rows, "similarity")
    assert fig.layout.title.text == "Similarity vs α, lite0 unit 373"
    assert unit_metric_vs_alpha_figure(rows.assign(spectral_slope=[-2.0, -2.5]),
                                       "spectral_slope").layout.title.text.startswith(
        "Spectral slope vs α")
    assert unit_metric_vs_alpha_figure(rows, "similarity", title="").layout.title.text is None
    spectra = pd.DataFrame({"unit": 373, "sign": ["control", "positive"] * 2,
                            "alpha": [0.0, 0.5] * 2, "freq": [1, 1, 2, 2],
                            "power": [1.0, 2.0, 0.5, 0.25]})
    assert spectrum_ratio_figure(spectra, alpha=0.5).layout.title.text == (
        "Power spectrum ratio, control / ablated at α = 0.5, unit 373")
    results = [_result("control", 0.0, 2.0), _result("negative", 1.0, 1.0)]
    assert activation_vs_alpha_figure(results).layout.title.text == (
        "Best activation vs α, m unit 3")
    assert metric_vs_alpha_figure(_summary(), "m", y_title="similarity").layout.title.text == (
        "similarity vs ablation strength α")


# -- 5. Compare models -------------------------------------------------------------------------

def test_compare_caption_ends_in_one_full_stop():
    note = metric_setup_note({"lpips": "unavailable: weights missing (x.pth).",
                              "objectness": "off"})
    assert note == "Metric setup: LPIPS unavailable: weights missing (x.pth); objectness off."
    assert ".." not in metric_setup_note({"lpips": "ok.", "objectness": "ok: v1."})
    assert metric_setup_note({}) == "Metric setup: LPIPS ?; objectness ?."
    assert full_stop("done. ") == "done." and full_stop("done") == "done."


@pytest.mark.usefixtures("tiny_dashboard")
def test_compare_command_box_wraps_its_lines():
    at = AppTest.from_file(str(ROOT / "pages" / "3_Compare_models.py"), default_timeout=120)
    at.query_params["models"] = "tiny_test"
    at.session_state["sweep_units"] = "1"
    at.run()
    assert not at.exception, at.exception
    code = at.get("code")[0]
    assert code.value.startswith("python -m signseg_core sweep") and code.proto.wrap_lines


# -- 6. a flat grey visualization --------------------------------------------------------------

def test_flat_images_are_found_by_their_pixel_std():
    rng = np.random.default_rng(0)
    grey = np.full((32, 32, 3), 128, np.uint8)
    start = (128 + rng.normal(0, 0.8, (32, 32, 3))).round().astype(np.uint8)  # gradvis's start
    moved = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255  # one flat colour
    assert pixel_std(grey) == pytest.approx(0, abs=1e-9) and pixel_std(moved) > 0.2
    assert pixel_std(np.full((4, 4), 0.5)) == pytest.approx(0, abs=1e-9)
    assert pixel_std(np.eye(2)) == pytest.approx(0.5)
    assert is_flat(grey) and is_flat(start) and is_flat(red) and not is_flat(moved)
    assert FLAT_STD == pytest.approx(2 / 255)
    assert flat_indices(np.stack([moved, grey, moved, start])) == [1, 3]
    assert flat_warning([]) == ""
    assert flat_warning(["channel 12"]).startswith("Channel 12 came out flat grey")
    assert "did not move them" in flat_warning(["channel 1", "channel 2"])
    with pytest.raises(ValueError, match="expected an"):
        pixel_std(np.zeros(5))


def _senders_script():
    import numpy as np
    import pandas as pd

    from signseg_ui.sender_images import show_sender_images

    moved = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    flat = np.full((1, 16, 16, 3), 128, np.uint8)
    arrays = {"images": np.concatenate([moved[:1], flat, moved[1:]]), "channels": [4, 7, 2]}
    ranking = pd.DataFrame({"channel": [4, 7, 2, 9], "frac_positive": [0.9, 0.8, 0.1, 0.2]})
    show_sender_images(arrays, ranking, k=1)


def test_a_flat_channel_visualization_gets_one_warning():
    at = AppTest.from_function(_senders_script, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == [flat_warning(["channel 7"])]


# -- 7. home points to the explorer ------------------------------------------------------------

@pytest.mark.usefixtures("tiny_dashboard")
def test_home_points_a_newcomer_to_the_explorer_first():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    link = at.main.get("page_link")[0]
    assert link.proto.label.startswith("Start here: the Ablation explorer")
    assert "drag α" in link.proto.label and link.proto.page == "Ablation_explorer"
    assert (ROOT / "pages" / "0_Ablation_explorer.py").is_file()
