"""Sweeps on Ray (issue 15): a local Ray started here (``ray.init(num_cpus=2)``, no dashboard)
gives the same bits as one process, survives a worker that dies, resumes from the store and
fails, after storing the rest, with the sentence of a task that cannot succeed."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signseg_core.cli.main import main
from signseg_core.errors import SignsegError
from signseg_core.models.registry import load_model
from signseg_core.optimize.results import load_condition
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.store import ResultStore
from signseg_core.ray_session import runtime_env as ray_runtime_env
from signseg_core.sweeps.cluster import evolve_on_ray, plan, run_sweep_on_ray
from signseg_core.sweeps.run import SweepSpec, run_sweep

ray = pytest.importorskip("ray")

TINY = SweepSpec(models=("tiny_test",), units=(1, 2), alphas=(0.0, 1.0),
                 ensemble=("tiny_test", "tiny_test_b"), lpips=False, detector=None,
                 settings=VisualizeSettings(generations=2, restarts=2,
                                            generator_options=(("size", 32),)))


@pytest.fixture(scope="module", autouse=True)
def local_ray(tmp_path_factory):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env=ray_runtime_env(), _temp_dir=str(tmp_path_factory.mktemp("ray")))
    # the drills below are functions of this module, which workers cannot import: send them whole
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def stored_arrays(spec: SweepSpec, store: ResultStore) -> list[dict]:
    """Every condition's stored arrays (codes, scores, ...), in the sweep's order."""
    out = []
    for name in spec.models:
        model = load_model(name)
        generators = spec.generators_for(model)
        for unit in spec.units:
            for key in spec.unit_keys(model, generators, unit):
                out.append(load_condition(store, key).arrays())
    return out


def test_a_sweep_on_ray_is_bit_identical_to_one_process(tmp_path):
    # Lite0, fourier: 2 units x 3 conditions (control, +/- alpha 1) x 2 restarts x 3 generations
    spec = SweepSpec(models=("efficientnet_lite0",), units=(1, 373), alphas=(0.0, 1.0),
                     ensemble=("efficientnet_lite0", "efficientnet_lite1"), lpips=False,
                     detector=None, settings=VisualizeSettings(generations=3, restarts=2,
                                                               popsize=8))
    on_ray = run_sweep_on_ray(spec, store=ResultStore(tmp_path / "ray"))
    alone = run_sweep(spec, store=ResultStore(tmp_path / "one"))
    pd.testing.assert_frame_equal(on_ray.table, alone.table, check_exact=True)
    pd.testing.assert_frame_equal(on_ray.spectra, alone.spectra, check_exact=True)
    ray_arrays = stored_arrays(spec, ResultStore(tmp_path / "ray"))
    one_arrays = stored_arrays(spec, ResultStore(tmp_path / "one"))
    assert len(ray_arrays) == 2 * 3
    for a, b in zip(ray_arrays, one_arrays):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def die_once(marker: Path):
    """A drill: the first task to run kills its own worker process; later attempts run."""
    def before(name: str, unit: int) -> None:
        if not marker.exists():
            marker.write_text(f"{name} {unit}")
            os._exit(1)
    return before


def test_a_worker_that_dies_is_retried_and_nothing_is_lost_or_doubled(tmp_path):
    store = ResultStore(tmp_path / "ray")
    marker = tmp_path / "died"
    done = evolve_on_ray(TINY, store=store, before=die_once(marker))
    assert marker.exists()  # a worker did die
    assert sorted(done.submit) == [("tiny_test", 1), ("tiny_test", 2)]
    assert plan(TINY, store).submit == ()  # every condition stored, once each
    alone = ResultStore(tmp_path / "one")
    run_sweep(TINY, store=alone)
    for a, b in zip(stored_arrays(TINY, store), stored_arrays(TINY, alone)):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_restarted_driver_submits_only_what_the_store_lacks(tmp_path):
    store = ResultStore(tmp_path / "s")
    run_sweep(dataclasses.replace(TINY, units=(1,)), store=store)  # the first driver got this far
    work = plan(TINY, store)
    assert work.stored == (("tiny_test", 1),) and work.submit == (("tiny_test", 2),)
    assert evolve_on_ray(TINY, store=store).submit == (("tiny_test", 2),)
    assert evolve_on_ray(TINY, store=store).submit == ()  # nothing left: no task at all


def refuse_unit_2(name: str, unit: int) -> None:
    if unit == 2:
        raise SignsegError(f"{name} unit {unit}: weights missing on this worker")


def test_a_task_that_cannot_succeed_fails_the_sweep_after_the_rest_is_stored(tmp_path):
    store = ResultStore(tmp_path / "s")
    with pytest.raises(SignsegError, match="tiny_test unit 2: weights missing on this worker"):
        evolve_on_ray(TINY, store=store, before=refuse_unit_2)
    assert plan(TINY, store).submit == (("tiny_test", 2),)  # unit 1 was stored all the same


def test_the_command_line_runs_a_sweep_on_the_cluster(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIGNSEG_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["sweep", "--models", "tiny_test", "--units", "1", "--alphas", "0,1",
            "--generations", "2", "--restarts", "2", "--generator-option", "size=32",
            "--ensemble", "tiny_test", "tiny_test_b", "--no-lpips", "--detector", "none",
            "--out", str(tmp_path / "out"), "--quiet"]
    assert main([*argv, "--cluster", "ray"]) == 0
    on_ray = pd.read_parquet(tmp_path / "out" / "sweep.parquet")
    assert len(on_ray) == 3 * 2  # control and alpha 1 of both signs, 2 restarts each
    with pytest.raises(SystemExit) as exited:  # argparse's own usage error
        main([*argv, "--cluster", "slurm"])
    assert exited.value.code == 2 and "expected ray or ray=ADDRESS" in capsys.readouterr().err


def test_a_dry_run_counts_the_sweep_and_projects_its_hours(tmp_path, monkeypatch, capsys):
    from signseg_core.sweeps.cluster import dry_run_table

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # resnet50's weights: missing
    monkeypatch.setenv("SIGNSEG_CACHE_DIR", str(tmp_path / "cache"))
    spec = dataclasses.replace(TINY, models=("tiny_test", "resnet50"),
                               settings=dataclasses.replace(TINY.settings, popsize=8))
    table = dry_run_table(spec, "cpu").set_index("model")
    # 2 units x 3 conditions x 2 restarts = 12 evolutions; x 8 images x 2 generations = 192
    assert list(table.evolutions) == [12, 12] and list(table.images) == [192, 192]
    tiny = table.loc["tiny_test"]
    assert tiny.images_per_s > 0 and tiny.hours == pytest.approx(192 / tiny.images_per_s / 3600)
    assert np.isnan(table.loc["resnet50"].hours)  # counted on random weights, never timed
    argv = ["sweep", "--models", "tiny_test", "--units", "1", "2", "--alphas", "0,1",
            "--generations", "2", "--restarts", "2", "--generator-option", "size=32",
            "--dry-run", "--device", "cuda"]  # a plan for GPUs this machine lacks
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "12 evolutions" in out and "0 of 1 model x generator pairs measured here" in out
    assert "tiny_test x fourier: no images/s on cuda here" in out


def test_a_cluster_sweep_leaves_a_progress_record_that_home_shows(tmp_path, monkeypatch,
                                                                  tiny_dashboard):
    from streamlit.testing.v1 import AppTest

    from signseg_core.sweeps.cluster import cluster_sweeps, record_progress

    monkeypatch.setenv("SIGNSEG_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(SignsegError):
        evolve_on_ray(TINY, store=ResultStore(tmp_path / "s"), before=refuse_unit_2)
    (record,) = cluster_sweeps()
    assert record["sweep"] == "tiny_test: 2 units, image set fourier 2"
    assert (record["units_done"], record["units_total"]) == (1, 2)
    assert record["state"] == "failed: tiny_test unit 2: weights missing on this worker"
    assert cluster_sweeps(clock=lambda: record["updated"] + 7 * 3600) == []  # stale: not shown

    import time
    record_progress(TINY, 1, 2, 12.5, "running", started=0.0, clock=lambda: time.time() - 30)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                           default_timeout=120).run()
    (table,) = [d.value for d in at.dataframe if "units evolved" in d.value.columns]
    shown = table.iloc[0]
    assert (shown["units evolved"], shown["images/s"], shown["state"]) == ("1/2", 12.5, "running")
    assert re.fullmatch(r"3\d s ago", shown["updated"])  # 30 s, and the page's own seconds
