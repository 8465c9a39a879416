"""The Neuron models page (pages/5), driven through AppTest on the tiny test network and a small
demo dataset (4 planted neurons, 24 images of 32 px): what it shows equals the engine's answers."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from apptest_helpers import ROOT, open_page
from streamlit.testing.v1 import AppTest

from signseg_core.jobs import default_manager
from signseg_core.neurons.data import load_image, load_neuron_data
from signseg_core.neurons.demo import write_demo_dataset
from signseg_core.neurons.extrapolation import model_extrapolation_test
from signseg_core.neurons.population import model_population_table
from signseg_core.neurons.study import (
    fit_study,
    localize_and_clear,
    neuron_ablation_table,
    neuron_readout_model,
    response_table,
)
from signseg_core.paths import cache_dir

PAGE = str(ROOT / "pages" / "5_Neuron_models.py")
SMALL_DEMO = {"model_name": "tiny_test", "n_images": 24, "n_neurons": 4, "image_size": 32}

pytestmark = pytest.mark.usefixtures("tiny_dashboard", "small_demo")


@pytest.fixture
def server_paths(monkeypatch, tmp_path_factory):
    """Server paths turned on, under the tests' temporary root (demo_csv and tmp_path)."""
    monkeypatch.setenv("SIGNSEG_ALLOW_SERVER_PATHS", "1")
    monkeypatch.setenv("SIGNSEG_DATA_ROOTS", str(tmp_path_factory.getbasetemp()))


@pytest.fixture
def small_demo(monkeypatch):
    import signseg_ui.neurons

    monkeypatch.setattr(signseg_ui.neurons, "DEMO_OPTIONS", SMALL_DEMO)


@pytest.fixture(scope="module")
def demo_csv(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("demo"), store=False, **SMALL_DEMO)


def run_page(**query) -> AppTest:
    return open_page(PAGE, **query)


def load(at: AppTest, path, images: str = "") -> AppTest:
    """Load through the server-path boxes (tests using it turn them on: ``server_paths``)."""
    at.text_input(key="neurons_path").input(str(path))
    at.text_input(key="neurons_images").input(images)
    at.button(key="neurons_load").click().run(timeout=120)
    assert not at.exception, at.exception
    return at


def frame(at: AppTest, column: str):
    """The first dataframe shown with ``column``."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def chart(at: AppTest, key: str) -> dict:
    for element in at.get("plotly_chart"):
        if key in element.proto.id:
            return json.loads(element.proto.spec)
    raise AssertionError(f"no plotly chart with key {key!r}")


def traces(fig: dict) -> dict[str, dict]:
    return {t.get("name"): t for t in fig["data"]}


def test_a_first_visit_offers_the_demo_and_uploads_and_no_server_paths():
    at = run_page()
    assert [b.key for b in at.button] == ["neurons_demo", "neurons_upload_load"]
    assert [u.key for u in at.file_uploader] == ["neurons_upload_responses",
                                                "neurons_upload_images"]
    assert not at.text_input  # no server path boxes unless the operator turns them on
    assert "use the demo dataset" in at.info[0].value and not at.dataframe
    assert not at.get("plotly_chart")


def test_the_demo_button_fits_every_neuron_as_fit_study_does(tiny):
    at = run_page()
    at.button(key="neurons_demo").click().run(timeout=120)
    assert not at.exception, at.exception
    csv = cache_dir() / "neuron_demo" / "responses.csv"
    assert at.query_params["data"] == "demo"  # a link that names no server path
    assert any(c.value.startswith("the demo dataset: 24 images, 4 neurons") for c in at.caption)
    assert str(cache_dir()) not in " ".join(c.value for c in at.caption)
    study = fit_study(tiny, load_neuron_data(csv), store=False)
    table = frame(at, "r2_test")
    assert list(table["neuron"]) == ["n00", "n01", "n02", "n03"]
    np.testing.assert_allclose(table["r2_test"], study.table["r2_test"], rtol=1e-9)
    np.testing.assert_allclose(table["positive_negative_ratio"],
                               study.table["positive_negative_ratio"], rtol=1e-9)
    best = study.best.loc[study.best["r2_test"].idxmax(), "neuron"]
    assert at.selectbox(key="neurons_neuron").value == best
    stars = traces(chart(at, "neurons_fit_fig"))["best per session"]
    assert sorted(stars["x"]) == sorted(study.best_neurons)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Neurons"] == "4" and metrics["Sessions"] == "3"
    summary = study.summary()
    assert metrics["Test r² (determination), best per session"] == (
        f"{summary['best_r2_test_mean']:.2f} ± {summary['best_r2_test_sd']:.2f}")
    assert metrics["Test r² (squared Pearson), best per session"] == (
        f"{summary['best_r2_test_pearson_mean']:.2f} ± {summary['best_r2_test_pearson_sd']:.2f}")
    np.testing.assert_allclose(table["r2_test_pearson"], study.table["r2_test_pearson"],
                               rtol=1e-9)
    assert at.number_input(key="neurons_min_sd_ratio").value == 0.0  # the paper's fit
    # 4 models cannot pass the Bonferroni test over 16 features: say why, show the top ones
    assert "at least 10 models are needed" in at.info[0].value
    assert len(frame(at, "agreement")) == 16


def test_min_sd_ratio_refits_and_says_which_r2_is_which(server_paths, demo_csv, tiny):
    at = load(run_page(), demo_csv)
    paper = fit_study(tiny, load_neuron_data(demo_csv), store=False)
    np.testing.assert_allclose(frame(at, "r2_test")["r2_test"], paper.table["r2_test"])
    caption = " ".join(c.value for c in at.caption)
    assert "0 (the paper's) keeps every feature that varies" in caption
    assert "Test r² is the coefficient of determination" in caption
    at.number_input(key="neurons_min_sd_ratio").set_value(0.3).run(timeout=120)
    assert not at.exception, at.exception
    filtered = fit_study(tiny, load_neuron_data(demo_csv), store=False, min_sd_ratio=0.3)
    shown = frame(at, "r2_test")
    np.testing.assert_allclose(shown["r2_test"], filtered.table["r2_test"], rtol=1e-9)
    np.testing.assert_array_equal(shown["n_positive"], filtered.table["n_positive"])
    assert not np.allclose(filtered.table["r2_test"], paper.table["r2_test"])  # a real change


def test_a_bad_csv_is_an_error_listing_its_row_and_forgets_the_last_dataset(server_paths,
                                                                           demo_csv, tmp_path):
    lines = demo_csv.read_text().splitlines()
    lines[2] = lines[2].replace(lines[2].split(",")[2], "abc")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    at = load(run_page(), demo_csv, str(demo_csv.parent))
    assert len(frame(at, "r2_test")) == 4
    load(at, bad, str(demo_csv.parent))
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "line 3: response 'abc' is not a number" in errors[0]
    assert "1 problem\n" in errors[0]
    assert not at.dataframe and not at.get("plotly_chart") and "data" not in at.query_params


def _zip_of(folder: Path, names) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.write(folder / name, name)
    return buffer.getvalue()


def upload(at: AppTest, responses: tuple[str, bytes], images: list[tuple[str, bytes]]):
    at.file_uploader(key="neurons_upload_responses").set_value((*responses, "text/csv"))
    at.file_uploader(key="neurons_upload_images").set_value(
        [(name, data, "application/octet-stream") for name, data in images])
    at.run(timeout=120)
    at.button(key="neurons_upload_load").click().run(timeout=120)
    assert not at.exception, at.exception
    return at


def test_an_uploaded_csv_and_zip_fit_as_the_same_files_on_disk(demo_csv, tiny):
    names = sorted(p.relative_to(demo_csv.parent).as_posix()
                   for p in (demo_csv.parent / "images").iterdir())
    at = upload(run_page(), ("my_neurons.csv", demo_csv.read_bytes()),
                [("pics.zip", _zip_of(demo_csv.parent, names))])
    want = fit_study(tiny, load_neuron_data(demo_csv), store=False)
    np.testing.assert_allclose(frame(at, "r2_test")["r2_test"], want.table["r2_test"], rtol=1e-9)
    assert any(c.value.startswith("my_neurons.csv: 24 images") for c in at.caption)
    assert "data" not in at.query_params  # an upload is no link


def test_uploaded_image_files_are_taken_by_name(demo_csv, tiny):
    csv = demo_csv.read_text().replace("images/", "")  # bare file names
    images = sorted((demo_csv.parent / "images").iterdir())
    at = upload(run_page(), ("r.csv", csv.encode()), [(p.name, p.read_bytes()) for p in images])
    assert len(frame(at, "r2_test")) == 4


def test_a_bad_upload_names_its_rows_and_no_server_path(demo_csv):
    lines = demo_csv.read_text().splitlines()
    lines[2] = lines[2].replace(lines[2].split(",")[2], "abc")
    lines[3] = "../../etc/passwd" + lines[3][lines[3].index(","):]
    at = upload(run_page(), ("mine.csv", "\n".join(lines).encode()),
                [("pics.zip", _zip_of(demo_csv.parent, ["images/img_000.png"]))])
    error = at.error[0].value
    assert error.startswith("Cannot load mine.csv: ") and "line 3: response 'abc'" in error
    assert "image '../../etc/passwd' (first on line 4) must be a file name inside" in error
    assert "not found in the image folder" in error
    assert str(cache_dir()) not in error and not at.dataframe


def test_a_zip_reaching_out_of_its_folder_is_refused(demo_csv):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil.png", b"x")
    at = upload(run_page(), ("r.csv", demo_csv.read_bytes()), [("evil.zip", buffer.getvalue())])
    assert "evil.zip: member '../evil.png' would be written outside" in at.error[0].value
    assert not (cache_dir() / "uploads" / "evil.png").exists() and not at.dataframe


def test_links_to_server_files_are_off_unless_the_operator_turns_them_on(demo_csv, monkeypatch,
                                                                        tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("db_user,db_password\nroot,hunter2\n")
    at = run_page(data=str(secret))
    assert "turned off" in at.error[0].value and "hunter2" not in at.error[0].value
    assert "data" not in at.query_params and not at.text_input
    monkeypatch.setenv("SIGNSEG_ALLOW_SERVER_PATHS", "1")
    monkeypatch.setenv("SIGNSEG_DATA_ROOTS", str(demo_csv.parent))
    at = run_page(data=str(secret))  # outside the data root: refused unread
    assert "not inside the data folders" in at.error[0].value
    assert "db_password" not in at.error[0].value and "hunter2" not in at.error[0].value
    (demo_csv.parent / "link.csv").unlink(missing_ok=True)
    (demo_csv.parent / "link.csv").symlink_to(secret)  # a link out of the root: refused too
    at = load(run_page(), demo_csv.parent / "link.csv")
    assert "not inside the data folders" in at.error[0].value
    (demo_csv.parent / "link.csv").unlink()
    at = load(run_page(), demo_csv)
    assert len(frame(at, "r2_test")) == 4 and at.query_params["data"] == str(demo_csv)


def test_choosing_another_neuron_redraws_its_predictions_and_lasso(server_paths, demo_csv, tiny):
    study = fit_study(tiny, load_neuron_data(demo_csv), store=False)
    at = load(run_page(), demo_csv)
    first = at.selectbox(key="neurons_neuron").value
    other = next(n for n in study.neurons if n != first)
    for neuron in (first, other):
        if neuron != first:
            at.selectbox(key="neurons_neuron").set_value(neuron).run(timeout=120)
        want = response_table(study, neuron)
        test = traces(chart(at, "neurons_scatter_fig"))["test"]
        part = want[want["split"] == "test"]
        np.testing.assert_allclose(test["x"], part["predicted"], rtol=1e-5)
        np.testing.assert_allclose(test["y"], part["response"], rtol=1e-12)
    at.toggle(key="neurons_lasso").set_value(True).run(timeout=120)
    assert not at.exception
    assert {"train: unconstrained", "test: positive only", "test r² gain"} <= set(
        traces(chart(at, "neurons_lasso_fig")))


def test_the_ablation_job_shows_the_strip_and_a_revisit_reads_the_store(server_paths, demo_csv,
                                                                        tiny):
    at = load(run_page(), demo_csv)
    neuron = at.selectbox(key="neurons_neuron").value
    at.number_input(key="neurons_generations").set_value(2)
    at.number_input(key="neurons_restarts").set_value(2)
    at.number_input(key="neurons_popsize").set_value(4).run(timeout=120)
    assert at.button(key="neurons_ablate").label == f"Compute neuron {neuron} (5 conditions)"
    at.button(key="neurons_ablate").click().run(timeout=120)
    assert not at.exception, at.exception
    jobs = [j for j in default_manager().jobs(active_only=False) if f"neuron {neuron}" in j.label]
    assert len(jobs) == 1 and jobs[0].wait(60) and jobs[0].state == "done", jobs
    want = neuron_ablation_table(neuron, jobs[0].result())
    at.run(timeout=120)
    assert not at.exception and "neurons_ablate" not in [b.key for b in at.button]
    shown = frame(at, "predicted_response")
    assert list(shown["condition"]) == ["control", "pos 0.5", "pos 1", "neg 0.5", "neg 1"]
    np.testing.assert_allclose(shown["predicted_response"], want["predicted_response"])
    np.testing.assert_allclose(shown["ablated_response"], want["ablated_response"])
    bold = [m.value for m in at.markdown if m.value.startswith("**") and m.value[2].isdigit()]
    assert bold == [f"**{v:.2f}**" for v in want["predicted_response"].iloc[[0, 1, 2, 0, 3, 4]]]
    assert len(at.get("image")) == 6  # control + 2 alphas, per sign
    study = fit_study(tiny, load_neuron_data(demo_csv), store=False)
    control = [r for r in jobs[0].result() if r.key.sign == "control"][0]
    test = model_extrapolation_test(study, neuron, control.intact_scores)
    assert any(m.value.startswith("**Fig. 21 left, in silico**: the intact model's predicted "
                                  "response to its 2 preferred images vs its 24 natural")
               and test.summary() in m.value for m in at.markdown)
    population = model_population_table(tiny, study, jobs[0].result())
    shown = frame(at, "population_z")
    assert list(shown["condition"]) == ["control", "pos 0.5", "pos 1", "neg 0.5", "neg 1"]
    np.testing.assert_allclose(shown["population_z"], population["population_z"], rtol=1e-5)
    lines = traces(chart(at, "neurons_population_fig"))
    assert {"positive", "negative", "control"} <= set(lines)
    assert any("needs the recorded population's responses" in c.value for c in at.caption)

    revisit = run_page(data=str(demo_csv))  # a new session: the URL and the store
    revisit.selectbox(key="neurons_neuron").set_value(neuron)
    revisit.number_input(key="neurons_generations").set_value(2)
    revisit.number_input(key="neurons_restarts").set_value(2)
    revisit.number_input(key="neurons_popsize").set_value(4).run(timeout=120)
    assert "neurons_ablate" not in [b.key for b in revisit.button]
    again = frame(revisit, "predicted_response")
    np.testing.assert_allclose(again["predicted_response"], want["predicted_response"])
    mine = [j for j in default_manager().jobs(active_only=False) if f"neuron {neuron}" in j.label]
    assert again["from_store"].all() and mine == jobs  # no second job


def test_localization_shows_the_mask_and_the_clearing_effect(server_paths, demo_csv, tiny):
    at = load(run_page(), demo_csv)
    neuron = at.selectbox(key="neurons_neuron").value
    image_path = at.selectbox(key="neurons_loc_image").value
    study = fit_study(tiny, load_neuron_data(demo_csv), store=False)
    responses = response_table(study, neuron)
    assert Path(image_path).name == responses.loc[responses["response"].idxmax(), "image"]
    at.button(key="neurons_localize").click().run(timeout=120)
    assert not at.exception, at.exception
    captions = [i.proto.imgs[0].caption for i in at.get("image")]
    assert captions[-3:] == ["mask", "cleared to gray", "cleared to white"]
    readout = neuron_readout_model(tiny, study, [neuron])
    loc, gray = localize_and_clear(lambda x: readout(x)[:, 0], load_image(image_path),
                                   diameter=6, sigma=3.75)  # 50 and 30 px scaled to 32 px
    table = frame(at, "relative_change").set_index("fill")
    assert table.loc["gray", "intact"] == pytest.approx(gray.intact, rel=1e-6)
    assert table.loc["gray", "relative_change"] == pytest.approx(gray.relative_change, rel=1e-5)
    assert f"covers {loc.area_fraction:.0%} of the image" in at.caption[-1].value
    test = model_extrapolation_test(study, neuron, [loc.intact])  # exact: 25 relabellings
    # one image against 24: t rises with the image's value, so p is its rank from the top / 25
    # (the image is itself one of the natural images, predicted in float32 and in float64)
    natural = study.features.astype(float) @ study.fit(neuron).weight + study.fit(neuron).bias
    assert test.exact and test.n_permutations == 25
    assert (1 + np.sum(natural > loc.intact + 1e-4)) / 25 <= test.p <= (
        1 + np.sum(natural >= loc.intact - 1e-4)) / 25
    assert any(m.value.startswith("**Fig. 21 left, in silico**: the predicted response to this "
                                  "image vs to the 24 natural images")
               and test.summary() in m.value for m in at.markdown)
    assert {e.label for e in at.expander} >= {
        f"Export tiny_test_responses_{neuron}_{Path(image_path).stem}_mask"}


def test_the_diverse_set_is_a_contact_sheet_of_k_images(server_paths, demo_csv):
    at = load(run_page(), demo_csv)
    assert at.text_input(key="neurons_diverse_folder").value == str(demo_csv.parent / "images")
    at.number_input(key="neurons_diverse_k").set_value(5)
    at.button(key="neurons_diverse_run").click().run(timeout=120)
    assert not at.exception, at.exception
    sheet = [i for i in at.get("image") if "PCA components" in i.proto.imgs[0].caption]
    assert len(sheet) == 1 and sheet[0].proto.imgs[0].caption.startswith("5 of 24 images")


# -- helpers -------------------------------------------------------------------------------------

def test_models_needed_and_the_localization_geometry_follow_the_paper():
    from signseg_core.neurons.perturbation import paper_geometry as localization_geometry
    from signseg_core.neurons.study import models_needed

    assert models_needed(1280) == 16  # 2 * 0.5**16 * 1280 = 0.039 < 0.05 <= 2 * 0.5**15 * 1280
    assert models_needed(16) == 10  # 2 * 0.5**10 * 16 = 0.031; m = 9 gives 0.0625
    assert localization_geometry(256, 300) == (50, 30.0)
    assert localization_geometry(128, 128) == (25, 15.0)
    assert localization_geometry(32, 40) == (6, 3.75)


def test_the_data_signature_follows_the_responses_file_and_its_images(demo_csv, tmp_path):
    import os
    import shutil

    from signseg_ui.neurons import data_signature, folder_signature

    copy = Path(shutil.copytree(demo_csv.parent, tmp_path / "demo"))
    csv = str(copy / "responses.csv")
    first = data_signature(csv)
    os.utime(copy / "planted_weights.npz", ns=(1, 1))  # not part of the dataset
    assert data_signature(csv) == first
    os.utime(copy / "images" / "img_003.png", ns=(1, 1))
    second = data_signature(csv)
    assert second != first
    os.utime(copy / "responses.csv", ns=(1, 1))
    assert data_signature(csv) != second
    assert data_signature(csv, str(copy)) != data_signature(csv)
    images = folder_signature(str(copy / "images"))
    os.utime(copy / "images" / "img_000.png", ns=(2, 2))
    assert folder_signature(str(copy / "images")) != images
