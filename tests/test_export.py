"""Exporting panels: sizes, the data behind figures, and files that open (PNG, SVG, PDF, zip).

Tests that render need Chromium (``apt-get install chromium``) and are skipped without it; one
shared renderer serves the module. The tests that stop it come first, so it starts only once.
"""

import io
import json
import math
import re
import threading
import warnings
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from apptest_helpers import needs_chromium
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from signseg_core.figures import export
from signseg_core.figures.export import (
    ChromiumNotFoundError,
    ExportSize,
    figure_bytes,
    figure_data_csv,
    figure_zip,
    image_png,
    renderer_running,
    start_renderer,
    stop_renderer,
)
from signseg_core.figures.plots import (
    SIGN_COLORS,
    dale_histogram_figure,
    image_strip,
    metric_vs_alpha_figure,
    spectrum_ratio_figure,
)
from signseg_core.store import CODE_VERSION

# chromium_path() is what kaleido resolves ($BROWSER_PATH, chromium, chrome, ...), so this is
# shutil.which("chromium") widened to every browser kaleido would accept.


def _summary() -> pd.DataFrame:
    """A two-sign table shaped like sweep.summarize's, with hand-set values."""
    mean = [0.9, 0.6, 0.25, 0.9, 0.8, 0.7]
    return pd.DataFrame({"sign": ["positive"] * 3 + ["negative"] * 3, "alpha": [0.0, 0.5, 1.0] * 2,
                         "m": mean, "m_ci_low": [v - 0.1 for v in mean],
                         "m_ci_high": [v + 0.125 for v in mean]})


def _read_csv(fig) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(figure_data_csv(fig)), keep_default_na=False, na_values=[""])


def _png(blob: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(blob))
    image.load()
    return image


def _n_colours(image: Image.Image) -> int:
    return len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0))


def _pdf_page_size(blob: bytes) -> tuple[float, float]:
    assert blob.startswith(b"%PDF-") and blob.rstrip().endswith(b"%%EOF")
    assert re.search(rb"/Type\s*/Page(?!s)", blob), "no page object"
    box = re.search(rb"/MediaBox\s*\[\s*([\d.\s-]+)\]", blob).group(1).split()
    x0, y0, x1, y1 = map(float, box)
    return x1 - x0, y1 - y0


def _svg_size(blob: bytes) -> tuple[float, float]:
    root = ET.fromstring(blob)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return float(root.attrib["width"]), float(root.attrib["height"])


@pytest.fixture(scope="module")
def renderer():
    if export.chromium_path() is None:
        pytest.skip("needs Chromium: apt-get install chromium")
    start_renderer()
    yield
    stop_renderer()


@pytest.fixture
def no_renderer():
    """No shared renderer during the test; one that ran before is started again after."""
    was_running = renderer_running()
    stop_renderer()
    yield
    if was_running:
        start_renderer()


# --- sizes: hand-worked values and validation (no browser) ---------------------------------


def test_print_size_single_column_at_300_dpi():
    size = ExportSize(width_in=3.5, dpi=300)
    assert size.layout_px() == (336.0, 252.0)  # 3.5 in x 96 CSS px/in, 3/4 as high
    assert size.png_pixels() == (1050, 788)  # 252 * 300/96 = 787.5 rounds up
    assert size.render_opts("pdf") == {"format": "pdf", "width": 336.0, "height": 252.0,
                                       "scale": 1}
    assert ExportSize(width_in=2, height_in=1, dpi=600).png_pixels() == (1200, 600)


def test_pixel_sizes():
    assert ExportSize().png_pixels() == (700, 525)
    assert ExportSize(width_px=400, height_px=300).png_pixels() == (400, 300)
    assert ExportSize(width_px=400, height_px=300, scale=2).png_pixels() == (800, 600)
    assert ExportSize(width_px=400, height_px=300, scale=2).layout_px() == (400, 300)


@settings(max_examples=200, deadline=None)
@given(width_in=st.floats(0.5, 8), aspect=st.floats(0.3, 1.5), dpi=st.integers(50, 1200))
def test_png_opts_land_on_the_rounded_size_whether_the_browser_floors_or_rounds(width_in, aspect,
                                                                                 dpi):
    assume(width_in * max(1.0, aspect) * dpi < 9999)  # larger PNGs are refused
    size = ExportSize(width_in=width_in, height_in=width_in * aspect, dpi=dpi)
    opts, (w, h) = size.render_opts("png"), size.png_pixels()
    for layout, target in ((opts["width"], w), (opts["height"], h)):
        assert math.floor(layout * opts["scale"]) == target == round(layout * opts["scale"])


@pytest.mark.parametrize("kwargs, match", [
    ({"dpi": 49}, r"dpi must be in \[50, 1200\]"),
    ({"dpi": 1201}, r"dpi must be in \[50, 1200\]"),
    ({"width_px": 0}, "width_px must be a positive number"),
    ({"width_px": -3}, "width_px must be a positive number"),
    ({"height_in": float("nan"), "width_in": 3}, "height_in must be a positive number"),
    ({"width_px": 400, "width_in": 3.5}, "not both"),
    ({"height_px": 400, "width_in": 3.5}, "not both"),
    ({"height_in": 2}, "needs width_in"),
    ({"width_in": 3.5, "scale": 2}, "scale=2 is for pixel sizes"),
    ({"width_px": 20_000}, "at most 10000"),
    ({"width_px": 4000, "scale": 3}, "at most 10000"),
    ({"width_in": 40, "dpi": 300}, "at most 10000"),
    ({"width_px": 5}, "at least 10"),
])
def test_bad_sizes_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExportSize(**kwargs)
    with pytest.raises(ValueError, match=match):
        figure_bytes(go.Figure(), "png", **kwargs)


def test_bad_format_and_figure_are_refused():
    with pytest.raises(ValueError, match=r"unknown format 'jpg'; choose from \['png', 'svg'"):
        figure_bytes(go.Figure(), "jpg")
    with pytest.raises(TypeError, match="plotly Figure"):
        figure_bytes({"data": []}, "png")


# --- the data behind figures (no browser) --------------------------------------------------


def test_csv_hand_worked_points_and_error_bars():
    fig = go.Figure([
        go.Scatter(x=[0, 1], y=[0.5, 2.0], name="a",
                   error_y={"type": "data", "array": [0.1, 0.2], "arrayminus": [0.3, 0.4]}),
        go.Bar(x=["p", "q"], y=[3, 4], name="b"),
        go.Scatter(y=[7.0, 8.0], name="c", error_y={"type": "constant", "value": 0.5}),
    ])
    assert figure_data_csv(fig).decode() == (
        "trace,name,role,x,y,error_y_minus,error_y_plus\n"
        "0,a,points,0,0.5,0.3,0.1\n"
        "0,a,points,1,2.0,0.4,0.2\n"
        "1,b,points,p,3,,\n"
        "1,b,points,q,4,,\n"
        "2,c,points,0,7.0,0.5,0.5\n"  # y only: plotly's x is the index
        "2,c,points,1,8.0,0.5,0.5\n")


def test_csv_of_metric_vs_alpha_has_the_points_and_the_ci_bands():
    summary = _summary()
    table = _read_csv(metric_vs_alpha_figure(summary, "m"))
    assert set(table.role) == {"band", "points"}
    for sign in ("positive", "negative"):
        want = summary[summary.sign == sign].sort_values("alpha")
        rows = table[table.name == sign]
        points, band = rows[rows.role == "points"], rows[rows.role == "band"]
        assert points.x.tolist() == want.alpha.tolist() and points.y.tolist() == want.m.tolist()
        assert band.x.tolist() == want.alpha.tolist()
        assert band.y_low.tolist() == want.m_ci_low.tolist()
        assert band.y_high.tolist() == want.m_ci_high.tolist()


def test_csv_of_dale_histogram_has_every_raw_value_and_the_mean_line():
    values = np.random.default_rng(0).uniform(0.5, 1.0, size=37)
    table = _read_csv(dale_histogram_figure(values, expected_untrained=0.6))
    samples = table[table.role == "histogram"]
    np.testing.assert_array_equal(samples.x.to_numpy(), values)  # exact: floats round-trip
    assert samples.y.isna().all() and set(samples.name) == {"channels"}
    mean_line = table[table.name.str.startswith("mean")]
    assert mean_line.x.tolist() == [values.mean()] * 2
    assert table[table.name.str.startswith("untrained")].x.tolist() == [0.6, 0.6]


def test_csv_of_spectrum_ratio_is_control_over_ablated():
    rows = [("m", u, sign, alpha, f, p) for u in (0, 1) for sign, alpha, f, p in (
        ("control", 0.0, 1.0, 4.0), ("control", 0.0, 2.0, 6.0),
        ("positive", 1.0, 1.0, 2.0), ("positive", 1.0, 2.0, 12.0),
        ("negative", 1.0, 1.0, 8.0), ("negative", 1.0, 2.0, 3.0))]
    spectra = pd.DataFrame(rows, columns=["model", "unit", "sign", "alpha", "freq", "power"])
    table = _read_csv(spectrum_ratio_figure(spectra, alpha=1.0))
    assert table.name.tolist() == ["positive α=1"] * 2 + ["negative α=1"] * 2
    assert table.x.tolist() == [1.0, 2.0, 1.0, 2.0]
    assert table.y.tolist() == [2.0, 0.5, 0.5, 2.0]  # the hline at 1 is a shape, not data


def test_csv_bands_without_an_owner_and_unsupported_traces():
    band = go.Scatter(x=[0, 1, 1, 0], y=[2, 3, 1, 0], fill="toself", fillcolor="#123456")
    table = _read_csv(go.Figure(band))
    assert table.name.tolist() == ["band 0"] * 2
    assert table.y_low.tolist() == [0, 1] and table.y_high.tolist() == [2, 3]
    with pytest.raises(ValueError, match="'heatmap' trace"):
        figure_data_csv(go.Figure(go.Heatmap(z=[[1, 2], [3, 4]])))
    with pytest.raises(TypeError, match="plotly Figure"):
        figure_data_csv({"data": []})


# --- images and zips without figures (no browser) ------------------------------------------


def test_image_png_round_trips():
    image = np.random.default_rng(1).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(_png(image_png(image))), image)
    for bad in (image.astype(float), image[..., 0], np.zeros((5, 7, 4), np.uint8),
                np.zeros((0, 7, 3), np.uint8), image.tolist()):
        with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\)"):
            image_png(bad)


def test_zip_of_images_needs_no_browser(no_renderer, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    tile = np.full((8, 8, 3), 200, np.uint8)
    strip = image_strip({"row": [(tile, "a"), (tile, "b")]}, tile=16)
    with zipfile.ZipFile(io.BytesIO(figure_zip({"strip": strip}))) as zf:
        assert sorted(zf.namelist()) == ["manifest.json", "strip.png"]
        np.testing.assert_array_equal(np.asarray(_png(zf.read("strip.png"))), strip)
        panel = json.loads(zf.read("manifest.json"))["panels"][0]
    assert panel == {"name": "strip", "kind": "image", "png_px": [strip.shape[1], strip.shape[0]],
                     "files": ["strip.png"]}


@pytest.mark.parametrize("kwargs, error, match", [
    ({"panels": {"a b": go.Figure()}}, ValueError, "bad panel name 'a b'"),
    ({"panels": {"../x": go.Figure()}}, ValueError, "bad panel name"),
    ({"panels": {"manifest": go.Figure()}}, ValueError, "not 'manifest'"),
    ({"panels": {}}, ValueError, "no panels"),
    ({"panels": {"a": "fig"}}, TypeError, "panel 'a' must be a plotly Figure"),
    ({"panels": {"a": np.zeros((4, 4), np.uint8)}}, ValueError, r"uint8 \(H, W, 3\)"),
    ({"formats": ("png", "gif")}, ValueError, "formats must be distinct values"),
    ({"formats": ()}, ValueError, "formats must be distinct values"),
    ({"formats": ("png", "png")}, ValueError, "formats must be distinct values"),
    ({"size": {"width_in": 3.5}}, TypeError, "size must be an ExportSize"),
])
def test_bad_zip_arguments_are_refused_before_rendering(kwargs, error, match):
    kwargs = {"panels": {"a": go.Figure()}, **kwargs}
    with pytest.raises(error, match=match):
        figure_zip(kwargs.pop("panels"), **kwargs)


# --- without a usable browser --------------------------------------------------------------


def test_missing_chromium_says_how_to_install_it(no_renderer, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    assert export.chromium_path() is None
    for call in (start_renderer, lambda: figure_bytes(go.Figure(), "png"),
                 lambda: figure_zip({"a": go.Figure()})):
        with pytest.raises(ChromiumNotFoundError, match="apt-get install chromium"):
            call()
        assert not renderer_running()


@pytest.mark.skipif(not Path("/bin/false").is_file(), reason="needs /bin/false")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_browser_that_dies_at_launch_raises_instead_of_hanging(no_renderer, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/bin/false")  # kaleido's server thread dies at once
    with pytest.raises(RuntimeError, match="close immediately"):
        start_renderer()
    assert not renderer_running()


# --- rendering (Chromium) ------------------------------------------------------------------


@needs_chromium
def test_renders_without_a_shared_renderer(no_renderer):
    fig = metric_vs_alpha_figure(_summary(), "m")
    image = _png(figure_bytes(fig, "png", width_px=300, height_px=200))
    assert image.size == (300, 200) and _n_colours(image) > 1
    with zipfile.ZipFile(io.BytesIO(figure_zip({"a": fig}, formats=("svg",)))) as zf:
        assert sorted(zf.namelist()) == ["a.csv", "a.svg", "manifest.json"]
        assert _svg_size(zf.read("a.svg")) == (336, 252)
    assert not renderer_running()  # the zip's own renderer was stopped


@needs_chromium
def test_start_and_stop_are_idempotent(renderer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        start_renderer()
        start_renderer()
    assert renderer_running()


@needs_chromium
@pytest.mark.parametrize("kwargs, size", [
    ({"width_px": 400, "height_px": 300}, (400, 300)),
    ({"width_px": 400, "height_px": 300, "scale": 2}, (800, 600)),
    ({"width_in": 3.5}, (1050, 788)),
    ({"width_in": 2, "height_in": 1.5, "dpi": 150}, (300, 225)),
])
def test_png_has_the_asked_pixels(renderer, kwargs, size):
    image = _png(figure_bytes(metric_vs_alpha_figure(_summary(), "m"), "png", **kwargs))
    assert image.size == size and _n_colours(image) > 1


@needs_chromium
def test_print_png_shows_both_curves_and_records_its_dpi(renderer):
    fig = metric_vs_alpha_figure(_summary(), "m", title="ablation")
    before = fig.to_dict()
    image = _png(figure_bytes(fig, "png", width_in=3.5, dpi=300))
    assert fig.to_dict() == before
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    for colour in SIGN_COLORS.values():  # each curve is drawn, in its own colour
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(axis=1) < 30).sum() > 200


@needs_chromium
def test_svg_and_pdf_have_the_print_size(renderer):
    fig = dale_histogram_figure(np.linspace(0.5, 0.9, 50))
    assert _svg_size(figure_bytes(fig, "svg", width_in=3.5)) == (336, 252)  # 96 px/in
    width_pt, height_pt = _pdf_page_size(figure_bytes(fig, "pdf", width_in=3.5))
    assert width_pt == pytest.approx(3.5 * 72, abs=0.5)
    assert height_pt == pytest.approx(3.5 * 0.75 * 72, abs=1.0)
    assert _svg_size(figure_bytes(fig, "svg", width_px=500, height_px=250)) == (500, 250)


@needs_chromium
def test_concurrent_exports_each_get_their_own_figure(renderer):
    fig = metric_vs_alpha_figure(_summary(), "m")
    widths, sizes = [200, 260, 320, 380], {}

    def work(w):
        sizes[w] = _png(figure_bytes(fig, "png", width_px=w, height_px=100)).size

    threads = [threading.Thread(target=work, args=(w,)) for w in widths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sizes == {w: (w, 100) for w in widths}


@needs_chromium
def test_zip_of_a_whole_figure(renderer):
    tile = np.full((8, 8, 3), 90, np.uint8)
    panels = {"a_dale": dale_histogram_figure(np.linspace(0.5, 0.9, 40)),
              "b_alpha": metric_vs_alpha_figure(_summary(), "m"),
              "c_strip": image_strip({"row": [(tile, "x")]}, tile=16)}
    size = ExportSize(width_in=3.0, dpi=200)
    with zipfile.ZipFile(io.BytesIO(figure_zip(panels, size=size))) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
        for name in ("a_dale", "b_alpha"):
            assert _png(zf.read(f"{name}.png")).size == (600, 450)
            assert _svg_size(zf.read(f"{name}.svg")) == (288, 216)
            assert _pdf_page_size(zf.read(f"{name}.pdf"))[0] == pytest.approx(216, abs=0.5)
            assert zf.read(f"{name}.csv") == figure_data_csv(panels[name])
        assert _png(zf.read("c_strip.png")).size == panels["c_strip"].shape[1::-1]
    assert names == {"manifest.json", "c_strip.png"} | {
        f"{p}.{ext}" for p in ("a_dale", "b_alpha") for ext in ("png", "svg", "pdf", "csv")}
    assert manifest["signseg_code_version"] == CODE_VERSION
    assert manifest["formats"] == ["png", "svg", "pdf"] and manifest["data"] is True
    assert manifest["size"]["width_in"] == 3.0 and manifest["size"]["dpi"] == 200
    assert [p["name"] for p in manifest["panels"]] == list(panels)
    assert manifest["panels"][1] == {"name": "b_alpha", "kind": "figure",
                                     "layout_px": [288.0, 216.0], "png_px": [600, 450],
                                     "files": ["b_alpha.png", "b_alpha.svg", "b_alpha.pdf",
                                               "b_alpha.csv"]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", manifest["created_utc"])
    assert renderer_running()  # a renderer the caller started is left running


def test_print_layout_sets_print_type_and_makes_room_for_title_and_legend():
    """A single-column panel (89 mm = 336 layout px): 7 pt text, the title on one line (it fits
    at 8 pt), the legend horizontal in packed rows between the title and the plot, the top
    margin holding both."""
    from signseg_core.figures.plots import dale_histogram_figure
    from signseg_core.figures.print_layout import (
        LEGEND_ROW_PX,
        print_layout,
        pt_to_px,
        text_width,
    )

    fig = dale_histogram_figure(np.linspace(0.5, 0.6, 50), expected_untrained=0.5126,
                                title="Readout Dale index per penultimate channel, "
                                      "efficientnet_lite0")
    before = fig.to_dict()
    out = print_layout(before, 336.0, 254.0)
    lay = out["layout"]
    assert before == fig.to_dict()  # the figure itself is not changed
    assert lay["font"]["size"] == pytest.approx(7 * 96 / 72)
    assert "Arial" in lay["font"]["family"]
    assert "<br>" not in lay["title"]["text"] and lay["title"]["font"]["size"] <= pt_to_px(8)
    assert text_width(lay["title"]["text"], lay["title"]["font"]["size"]) <= 336 - 12
    rows = [lay[k] for k in ("legend", "legend2")]
    assert "legend3" not in lay  # three entries, the long one alone: two rows, not three
    assert all(r["orientation"] == "h" and r["yanchor"] == "top" for r in rows)
    assert rows[0]["y"] - rows[1]["y"] == pytest.approx(LEGEND_ROW_PX / 254)
    assert [t.get("legend") for t in out["data"]] == ["legend", "legend", "legend2"]
    assert lay["margin"]["t"] >= 1.3 * lay["title"]["font"]["size"] + 2 * LEGEND_ROW_PX
    assert [{k: v for k, v in t.items() if k != "legend"} for t in out["data"]] == before["data"]
    assert "height" not in lay
