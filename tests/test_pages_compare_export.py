"""The Compare models and Export pages (3 and 4), driven through AppTest on the tiny test network
with a tiny sweep in the store; downloaded files are opened (PNG, SVG, PDF, CSV, ZIP)."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from apptest_helpers import ROOT, needs_chromium, open_page
from PIL import Image
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from signseg_core.conditions import condition_grid
from signseg_core.figures import export
from signseg_core.figures.compare import alpha_strip
from signseg_core.models.registry import load_model
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.visualize import visualize
from signseg_core.signs import dale_index
from signseg_core.store import ResultStore, default_store
from signseg_core.sweeps.run import SweepSpec, run_sweep, summarize
from signseg_core.sweeps.stored import read_stored_sweep, sweep_command
from signseg_core.sweeps.tables import change_table, family_models
from signseg_ui.export_page import DEFAULT_STRIP_TILE

COMPARE = str(ROOT / "pages" / "3_Compare_models.py")
EXPORT = str(ROOT / "pages" / "4_Export.py")
#: The tiny sweep in the store, and the page settings that find it.
SPEC = SweepSpec(models=("tiny_test",), units=(1,), alphas=(0.0, 0.5, 1.0),
                 ensemble=("tiny_test", "tiny_test_b"), lpips=False, detector=None,
                 settings=VisualizeSettings(generations=2, restarts=2))
SETTINGS = {"sweep_units": "1", "sweep_alphas": "0,0.5,1", "sweep_generations": 2,
            "sweep_restarts": 2, "sweep_seed": 0, "sweep_ensemble": ["tiny_test", "tiny_test_b"],
            "sweep_lpips": False, "sweep_detector": False}

pytestmark = pytest.mark.usefixtures("tiny_dashboard")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A result store holding SPEC's sweep, computed once for the module."""
    folder = tmp_path_factory.mktemp("sweep") / "results"
    store = ResultStore(folder)
    run_sweep(SPEC, store=store)
    store.close()
    return folder


@pytest.fixture
def stored(sweep_dir, tmp_path) -> None:
    """The module's sweep, copied into this test's result store."""
    shutil.copytree(sweep_dir, tmp_path / "cache" / "results")


@pytest.fixture
def downloads(monkeypatch) -> dict:
    """File name → bytes (or the deferred callable) of every download button drawn."""
    got: dict = {}
    add, add_deferred = MediaFileManager.add, MediaFileManager.add_deferred

    def eager(self, data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        if is_for_static_download:
            got[file_name] = data
        return add(self, data, mimetype, coordinates, file_name, is_for_static_download)

    def deferred(self, fn, mimetype, coordinates, file_name=None, **kwargs):
        got[file_name] = fn
        return add_deferred(self, fn, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add", eager)
    monkeypatch.setattr(MediaFileManager, "add_deferred", deferred)
    yield got
    export.stop_renderer()


run_page = open_page


def element(at: AppTest, kind: str, key: str):
    for el in at.get(kind):
        if el.proto.id.endswith(key):
            return el
    raise AssertionError(f"no {kind} with key {key!r}")


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    """The first dataframe shown with ``column`` (non-interactive dataframes carry no key)."""
    for frame in at.dataframe:
        if column in frame.value.columns:
            return frame.value
    raise AssertionError(f"no dataframe with a {column!r} column")


def chart(at: AppTest, key: str) -> dict[str, dict]:
    fig = json.loads(element(at, "plotly_chart", key).proto.spec)
    return {t.get("name"): t for t in fig["data"]}


def file_bytes(got: dict, name: str) -> bytes:
    data = got[name]
    return data() if callable(data) else data


def button_keys(at: AppTest) -> list[str]:
    return [b.proto.id.rsplit("-", 1)[-1] for b in at.get("download_button")]


# -- Compare models ----------------------------------------------------------------------------

def test_compare_page_names_missing_weights_and_results_with_the_command():
    at = run_page(COMPARE, state=SETTINGS, models="tiny_test,resnet50")
    assert at.multiselect(key="cmp_models").value == ["tiny_test", "resnet50"]
    assert at.selectbox(key="cmp_family").value == "custom"
    dale = table_with(at, "mean_dale")
    assert list(dale.model) == ["tiny_test"]
    weight = load_model("tiny_test").readout.weight
    assert dale.mean_dale[0] == pytest.approx(float(dale_index(weight).mean()))
    assert "resnet50" in at.warning[0].value
    coverage = table_with(at, "status")
    assert list(coverage.status) == ["not computed", "no weights"]
    assert "resnet50-0676ba61.pth" in at.warning[1].value
    spec = dataclasses.replace(SPEC, models=("tiny_test", "resnet50"))
    assert at.get("code")[0].value == sweep_command(spec, ["tiny_test"])
    assert "python -m signseg_core sweep --models tiny_test --units 1" in at.get("code")[0].value
    assert "No stored sweep results" in at.info[-1].value
    assert [c.proto.id.rsplit("-", 1)[-1] for c in at.get("plotly_chart")] == ["cmp_dale_fig"]


def test_compare_page_shows_the_stored_sweep_and_follows_the_choices(stored):
    at = run_page(COMPARE, state={**SETTINGS, "sweep_seed": 1}, models="tiny_test")
    assert "No stored sweep results" in at.info[-1].value  # seed 1 was never computed
    at.number_input(key="sweep_seed").set_value(0)
    at.button(key="sweep_apply").click().run()
    assert not at.exception, at.exception
    expected = change_table(read_stored_sweep(SPEC, store=default_store()).table)
    exp = expected.set_index(["sign", "alpha"])
    lines = chart(at, "cmp_change_fig")
    assert lines["positive"]["x"] == ["tiny_test"]
    assert lines["positive"]["y"] == pytest.approx([exp.loc[("positive", 1.0)].delta])
    assert lines["negative"]["y"] == pytest.approx([exp.loc[("negative", 1.0)].delta])
    at.select_slider(key="cmp_alpha").set_value(0.5).run()
    assert chart(at, "cmp_change_fig")["positive"]["y"] == pytest.approx(
        [exp.loc[("positive", 0.5)].delta])
    at.radio(key="cmp_show").set_value("mean").run()
    assert chart(at, "cmp_change_fig")["negative"]["y"] == pytest.approx(
        [exp.loc[("negative", 0.5)]["mean"]])
    curves = chart(at, "cmp_curves_fig")["tiny_test · positive"]
    assert curves["x"] == [0.0, 0.5, 1.0]
    assert "needs stored results of at least 3 models" in at.info[-1].value

    at.selectbox(key="cmp_family").set_value("robust").run()
    assert not at.exception, at.exception
    assert at.multiselect(key="cmp_models").value == list(family_models("robust"))
    assert at.query_params["models"] == ",".join(family_models("robust"))
    coverage = table_with(at, "status")
    assert set(coverage.status) == {"no weights"} and len(coverage) == 6
    at.selectbox(key="cmp_family").set_value("tanh").run()
    at.selectbox(key="cmp_arch").set_value("vgg16").run()
    assert at.multiselect(key="cmp_models").value == ["vgg16", "vgg16_tanh"]
    at.multiselect(key="cmp_models").set_value(["vgg16"]).run()
    assert at.selectbox(key="cmp_family").value == "custom"


def test_compare_models_come_from_the_url_and_stay_across_pages():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for key, value in SETTINGS.items():
        at.session_state[key] = value
    at.run()
    at.query_params["models"] = "efficientnet_lite1,bogus,tiny_test"
    at.switch_page("pages/3_Compare_models.py").run()
    assert not at.exception, at.exception
    assert any("unknown model 'bogus'" in e.value for e in at.error)
    assert at.multiselect(key="cmp_models").value == ["efficientnet_lite1", "tiny_test"]
    assert at.query_params["models"] == "efficientnet_lite1,tiny_test"
    at.text_input(key="sweep_units").set_value("1 2")
    at.button(key="sweep_apply").click().run()
    at.switch_page("pages/4_Export.py").run()
    assert not at.exception, at.exception
    assert at.text_input(key="sweep_units").value == "1 2"  # the same settings form
    at.switch_page("pages/3_Compare_models.py").run()
    assert at.multiselect(key="cmp_models").value == ["efficientnet_lite1", "tiny_test"]
    assert list(table_with(at, "mean_dale").model) == [
        "efficientnet_lite1", "tiny_test"]


# -- Export ------------------------------------------------------------------------------------

@needs_chromium
def test_export_page_downloads_files_that_open(downloads):
    at = run_page(EXPORT, state=SETTINGS)
    assert at.selectbox(key="export_kind").value == "dale_hist"
    assert {"export_png", "export_svg", "export_pdf", "export_csv", "export_zip",
            "export_zip_all"} <= set(button_keys(at))
    stem = "tiny_test_readout_dale_hist"
    png = Image.open(io.BytesIO(file_bytes(downloads, f"{stem}.png")))
    assert png.format == "PNG" and png.size == (1051, 791)  # 89 x 67 mm at 300 dpi
    assert png.info["dpi"][0] == pytest.approx(300, abs=0.1)
    assert ET.fromstring(file_bytes(downloads, f"{stem}.svg")).tag.endswith("svg")
    assert file_bytes(downloads, f"{stem}.pdf").startswith(b"%PDF")
    data = pd.read_csv(io.BytesIO(file_bytes(downloads, f"{stem}.csv")))
    samples = data[data.role == "histogram"].x.to_numpy()
    np.testing.assert_allclose(samples, dale_index(load_model("tiny_test").readout.weight))
    with zipfile.ZipFile(io.BytesIO(file_bytes(downloads, f"{stem}.zip"))) as zf:
        assert sorted(zf.namelist()) == sorted(
            ["manifest.json", *(f"{stem}.{x}" for x in ("png", "svg", "pdf", "csv"))])

    downloads.clear()
    at.multiselect(key="export_formats").set_value(["png"])
    at.radio(key="export_size_unit").set_value("px").run()
    at.number_input(key="export_width_px").set_value(400)
    at.number_input(key="export_height_px").set_value(300)
    at.select_slider(key="export_scale").set_value(1).run()
    assert not at.exception, at.exception
    assert "export_svg" not in button_keys(at)
    assert Image.open(io.BytesIO(file_bytes(downloads, f"{stem}.png"))).size == (400, 300)
    with zipfile.ZipFile(io.BytesIO(file_bytes(downloads, "tiny_test_figure.zip"))) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
    assert [p["name"] for p in manifest["panels"]] == [
        "tiny_test_readout_dale_hist", "tiny_test_layer_dale", "tiny_test_2_ranking"]
    assert names == {"manifest.json", *(f"{p['name']}.{x}" for p in manifest["panels"]
                                        for x in ("png", "csv"))}


def test_export_page_offers_the_stored_strip_and_sweep_panels(stored, downloads):
    at = run_page(EXPORT, state={**SETTINGS, "export_strip_unit": 1}, panel="strip")
    assert at.selectbox(key="export_kind").value == "strip"
    strip = np.asarray(Image.open(io.BytesIO(file_bytes(downloads,
                                                         "tiny_test_unit1_strip.png"))))
    results = visualize(load_model("tiny_test"), condition_grid([1], alphas=SPEC.alphas),
                        settings=SPEC.settings, store=default_store())
    assert all(r.from_store for r in results)
    np.testing.assert_array_equal(strip, alpha_strip(results, tile=DEFAULT_STRIP_TILE))
    shown = [h.proto.body for h in at.get("html") if "data:image/png;base64," in h.proto.body]
    assert len(shown) == 1  # at its own size, scrolling sideways: thumbnails as in the PNG
    raw = base64.b64decode(shown[0].split("base64,")[1].split('"')[0])
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(raw))), strip)
    at.select_slider(key="export_strip_tile").set_value(224).run()
    bigger = np.asarray(Image.open(io.BytesIO(file_bytes(downloads,
                                                          "tiny_test_unit1_strip.png"))))
    np.testing.assert_array_equal(bigger, alpha_strip(results, tile=224))

    at.selectbox(key="export_kind").set_value("metric").run()
    assert at.query_params["panel"] == "metric"
    data = pd.read_csv(io.BytesIO(file_bytes(downloads, "tiny_test_similarity_vs_alpha.csv")))
    summary = summarize(read_stored_sweep(SPEC, store=default_store()).table)
    for sign in ("positive", "negative"):
        line = data[(data.name == sign) & (data.role == "points")]
        want = summary[summary.sign == sign].sort_values("alpha")
        np.testing.assert_allclose(line.x, want.alpha)
        np.testing.assert_allclose(line.y, want.similarity)


def test_export_page_says_what_is_not_stored_and_bad_urls():
    at = run_page(EXPORT, state=SETTINGS, panel="metric")
    assert "Not available yet: no stored results" in at.info[0].value
    assert at.get("code")[0].value == sweep_command(SPEC)
    at = run_page(EXPORT, state=SETTINGS, panel="bogus")
    assert any("unknown panel 'bogus'" in e.value for e in at.error)
    assert at.selectbox(key="export_kind").value == "dale_hist"


def test_without_chromium_one_message_and_still_csv(monkeypatch, downloads):
    monkeypatch.setattr("signseg_ui.export_widgets.chromium_path", lambda: None)
    at = run_page(EXPORT, state=SETTINGS)
    assert len(at.warning) == 1 and "needs Chromium" in at.warning[0].value
    assert button_keys(at) == ["export_csv"]
    assert pd.read_csv(io.BytesIO(downloads["tiny_test_readout_dale_hist.csv"])).shape[0] > 0
    at.selectbox(key="export_kind").set_value("ranking").run()
    assert button_keys(at) == ["export_csv"] and len(at.warning) == 1
