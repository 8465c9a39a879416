"""The Weight dynamics page (pages/7), driven through AppTest: the sources a visitor may use
(upload, the labelled demo, a server folder only where the operator allows one), the background
job, and figures that show the engine's numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from apptest_helpers import ROOT, open_page
from streamlit.testing.v1 import AppTest

from signseg_core.analyses.dynamics import dynamics_key, stored_dynamics, weight_dynamics
from signseg_core.analyses.dynamics_files import list_checkpoints
from signseg_core.jobs import default_manager
from signseg_core.store import default_store

PAGE = str(ROOT / "pages" / "7_Weight_dynamics.py")

# fc.weight columns over epochs 1..3 (tests/test_weight_dynamics.py works them by hand):
#   channel 0: (1, 0) -> (1, 1) -> (0, 1): cos 0, 1/sqrt(2), 1 -> converges at epoch 3
#   channel 1: (6, -8) -> (4, 3) -> (3, -4): cos 1, 0, 1 -> converges at epoch 1
HAND = [torch.tensor([[1.0, 6.0], [0.0, -8.0]]), torch.tensor([[1.0, 4.0], [1.0, 3.0]]),
        torch.tensor([[0.0, 3.0], [1.0, -4.0]])]

pytestmark = pytest.mark.usefixtures("tiny_dashboard", "short_demo")


@pytest.fixture
def short_demo(monkeypatch):
    import signseg_ui.dynamics_page

    monkeypatch.setitem(signseg_ui.dynamics_page.DEMO_OPTIONS, "epochs", 3)


@pytest.fixture
def run_folder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    for k, w in enumerate(HAND, start=1):
        torch.save({"fc.weight": w}, folder / f"epoch_{k}.pt")
    return folder


@pytest.fixture
def server_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("SIGNSEG_ALLOW_SERVER_PATHS", "1")
    monkeypatch.setenv("SIGNSEG_DATA_ROOTS", str(tmp_path))


def chart(at: AppTest, key: str) -> dict:
    for element in at.get("plotly_chart"):
        if key in element.proto.id:
            return json.loads(element.proto.spec)
    raise AssertionError(f"no plotly chart with key {key!r}")


def new_jobs(before: set) -> list:
    return [j for j in default_manager().jobs(active_only=False) if j.id not in before]


def compute(at: AppTest, *, state: str = "done") -> AppTest:
    """Press Compute, wait for the one background job it starts to end in ``state``, and rerun
    the page."""
    before = {j.id for j in default_manager().jobs(active_only=False)}
    at.button(key="dynamics_compute").click().run(timeout=120)
    assert not at.exception, at.exception
    jobs = new_jobs(before)
    assert len(jobs) == 1 and jobs[0].label == "Weight dynamics", jobs
    assert jobs[0].wait(60) and jobs[0].state == state, (jobs, jobs[0].error)
    at.run(timeout=120)
    assert not at.exception, at.exception
    return at


def test_a_first_visit_offers_the_demo_and_uploads_and_no_server_folder():
    at = open_page(PAGE)
    assert [b.key for b in at.button] == ["dynamics_demo", "dynamics_upload_load"]
    assert [u.key for u in at.file_uploader] == ["dynamics_upload"]
    assert "dynamics_folder" not in [t.key for t in at.text_input]
    assert "Upload the checkpoints" in at.info[0].value


def test_uploaded_checkpoints_are_computed_in_the_background_and_shown(run_folder):
    at = open_page(PAGE)
    at.file_uploader(key="dynamics_upload").set_value(
        [(p.name, p.read_bytes(), "application/octet-stream") for p in run_folder.iterdir()])
    at.run(timeout=120)
    at.button(key="dynamics_upload_load").click().run(timeout=120)
    assert not at.exception and not at.error, at.error
    assert at.button(key="dynamics_compute").label == "Compute the weight dynamics (3 checkpoints)"
    at = compute(at)
    assert "3 uploaded checkpoints: 3 checkpoints (epoch_1.pt … epoch_3.pt)" in at.caption[0].value
    assert not at.warning  # not the demo
    scatter = chart(at, "dynamics_scatter")["data"][0]
    assert scatter["x"] == [0.5, 0.5]
    assert [round(y) for y in scatter["y"]] == [3, 1]  # jittered by at most 0.15
    curves = chart(at, "dynamics_curves")["data"]
    by_name = {t["name"]: t["y"] for t in curves}
    assert by_name["fc[0]"] == pytest.approx([0.0, 1 / math.sqrt(2), 1.0])
    assert by_name["threshold"] == [0.9, 0.9]
    shown = [d.value for d in at.dataframe if "convergence_epoch" in d.value.columns][0]
    assert list(shown["convergence_epoch"]) == [3, 1]


def test_a_revisit_reads_the_store_without_a_job(server_paths, run_folder):
    paths = list_checkpoints(run_folder)
    weight_dynamics(paths, store=default_store())
    assert stored_dynamics(default_store(), dynamics_key(paths, threshold=0.9)) is not None
    before = {j.id for j in default_manager().jobs(active_only=False)}
    at = open_page(PAGE)
    at.text_input(key="dynamics_folder").input(str(run_folder))
    at.button(key="dynamics_folder_load").click().run(timeout=120)
    assert not at.exception and not at.error, at.error
    assert "dynamics_compute" not in [b.key for b in at.button]
    assert chart(at, "dynamics_scatter")["data"][0]["x"] == [0.5, 0.5]
    assert not new_jobs(before)


def test_a_server_folder_outside_the_roots_and_a_bad_folder_are_one_sentence(server_paths,
                                                                             tmp_path):
    at = open_page(PAGE)
    at.text_input(key="dynamics_folder").input("/etc")
    at.button(key="dynamics_folder_load").click().run(timeout=120)
    assert "is not inside the data folders" in at.error[0].value
    (tmp_path / "empty").mkdir()
    at.text_input(key="dynamics_folder").input(str(tmp_path / "empty"))
    at.button(key="dynamics_folder_load").click().run(timeout=120)
    assert "holds no checkpoint files" in at.error[0].value
    assert "dynamics_compute" not in [b.key for b in at.button]


def test_a_bad_upload_is_named():
    at = open_page(PAGE)
    at.file_uploader(key="dynamics_upload").set_value(
        [("epoch_1.pt", b"garbage", "application/octet-stream"),
         ("epoch_2.pt", b"more garbage", "application/octet-stream")])
    at.run(timeout=120)
    at.button(key="dynamics_upload_load").click().run(timeout=120)
    at = compute(at, state="failed")
    assert "could not be computed" in at.error[0].value and "epoch_2.pt" in at.error[0].value


def test_the_demo_is_labelled_as_such(tmp_path):
    at = open_page(PAGE)
    at.button(key="dynamics_demo").click().run(timeout=120)
    assert not at.exception and not at.error, at.error
    at = compute(at)
    assert at.caption[0].value.startswith("the built-in demo: a 4-layer network")
    assert "say nothing about ResNet18 on ImageNet" in at.warning[0].value
    scatter = chart(at, "dynamics_scatter")["data"][0]
    assert len(scatter["x"]) == 3 + 16 + 32 + 32
    assert np.isfinite(scatter["y"]).all()
