"""The dashboard's jobs on Ray (issue 15, item 5): with ``SIGNSEG_RAY_ADDRESS`` set, a visualize
or gradvis job runs as a Ray task on a local Ray started here (``ray.init(num_cpus=2)``), under the
same job key, its results stored by this process as they arrive and checked against their keys;
Cancel stops the task; a task's error comes back in its own words."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

from signseg_core.conditions import Condition
from signseg_core.generators.catalog import make_generator
from signseg_core.jobs import JobCancelled, JobManager
from signseg_core.models.registry import load_model
from signseg_core.optimize.gradvis import GradVisConfig, visualize_channels
from signseg_core.optimize.live import run_live
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.results import load_condition
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.store import ResultStore
from signseg_core.sweeps import ray_jobs
from signseg_core.ray_session import runtime_env as ray_runtime_env
from signseg_core.sweeps.ray_jobs import follow, run_live_on_ray, streamed
from signseg_core.sweeps.tasks import gradvis_job, gradvis_key, visualize_job, visualize_job_key

ray = pytest.importorskip("ray")

SETTINGS = VisualizeSettings(generations=3, restarts=2, popsize=6,
                             generator_options=(("size", 32),))


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env=ray_runtime_env(), _temp_dir=str(tmp_path_factory.mktemp("ray")))
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the drills below
    yield
    ray.shutdown()


@pytest.fixture
def on_ray(local_ray, monkeypatch):
    monkeypatch.setenv(ray_jobs.ADDRESS_VARIABLE, "local")


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny_test")


def request_of(model, conditions, settings=SETTINGS) -> VisualizeRequest:
    return VisualizeRequest.build(model, conditions, settings,
                                  generator=make_generator("fourier", size=32))


CONDITIONS = [Condition(4, "positive", 0.0), Condition(4, "positive", 0.5),
              Condition(4, "negative", 1.0)]


# -- the worker's event stream, without Ray --------------------------------------------------------
def test_streamed_sends_results_and_end_in_order_and_thins_progress():
    def compute(emit, should_stop):
        for i in range(50):           # 50 progress events in far less than 0.2 s ...
            emit("progress", (i, 50, "", None))
        emit("result", "a")
        emit("result", "b")

    events = list(streamed(compute))
    kinds = [k for k, _ in events]
    assert kinds[-3:] == ["result", "result", "end"] and [p for k, p in events if k == "result"] \
        == ["a", "b"]
    progress = [p for k, p in events if k == "progress"]
    # ... so at most a few are sent, and the last one sent before a result is the newest
    assert 1 <= len(progress) <= 3 and progress[-1][0] == 49


def test_streamed_raises_the_computations_error():
    def compute(emit, should_stop):
        emit("result", 1)
        raise ValueError("unit 9999 is out of range")

    events = streamed(compute)
    assert next(events) == ("result", 1)
    with pytest.raises(ValueError, match="unit 9999"):
        next(events)


def test_closing_the_stream_stops_the_computation():
    stopped = threading.Event()

    def compute(emit, should_stop):
        emit("result", 0)
        while not should_stop():
            time.sleep(0.01)
        stopped.set()

    events = streamed(compute)
    assert next(events) == ("result", 0)
    events.close()  # what ray.cancel does to the task: GeneratorExit at the yield
    assert stopped.is_set()


# -- on a local Ray -------------------------------------------------------------------------------
def test_job_key_does_not_depend_on_where_the_job_runs(tiny, store, monkeypatch):
    request = request_of(tiny, CONDITIONS)
    here = visualize_job_key(request, store=store)
    monkeypatch.setenv(ray_jobs.ADDRESS_VARIABLE, "auto")
    assert visualize_job_key(request, store=store) == here  # same key, so jobs are shared


def test_a_visualize_job_on_ray_stores_what_one_process_computes(on_ray, tiny, tmp_path):
    store = ResultStore(tmp_path / "store")
    manager = JobManager(max_workers=2)
    request = request_of(tiny, CONDITIONS)
    job = visualize_job(manager, request, store=store)
    # a second session asking for the same results gets the same job (one Ray task)
    assert visualize_job(manager, request_of(tiny, CONDITIONS[::-1]), store=store) is job
    results = job.result(timeout=120)
    assert job.state == "done" and job.done == job.total > 0
    local = run_live(request_of(tiny, CONDITIONS), store=False).results
    assert [r.key for r in results] == sorted(
        [r.key for r in local], key=lambda k: ((k.unit, k.sign, k.alpha), k.generator))
    for key in request.keys:
        stored, here = load_condition(store, key), next(r for r in local if r.key == key)
        assert stored is not None
        # another process, maybe another thread count: the same evolution, float noise apart
        np.testing.assert_allclose(stored.best_scores, here.best_scores, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stored.max_per_gen, here.max_per_gen, rtol=1e-4, atol=1e-5)
    manager.shutdown()


def test_stored_conditions_are_not_sent_to_the_cluster(on_ray, tiny, store, monkeypatch):
    run_live(request_of(tiny, CONDITIONS[:2]), store=store)
    sent = []
    monkeypatch.setattr(ray_jobs, "follow",
                        lambda task, args, *a, **k: sent.append(args[2]))
    run_live_on_ray(request_of(tiny, CONDITIONS), store=store)
    assert sent == [(CONDITIONS[2],)]
    sent.clear()
    run_live(request_of(tiny, CONDITIONS), store=store)
    live = run_live_on_ray(request_of(tiny, CONDITIONS), store=store)
    assert sent == [] and len(live.results) == 3  # all stored: no task at all


def test_a_result_under_a_key_the_job_did_not_ask_for_is_refused(tiny, store, monkeypatch):
    foreign = run_live(request_of(tiny, [Condition(5, "positive", 0.0)]), store=False).results[0]

    def fake_follow(task, args, on_event, should_stop, **kwargs):
        on_event("result", foreign)

    monkeypatch.setattr(ray_jobs, "follow", fake_follow)
    with pytest.raises(RuntimeError, match="did not ask for"):
        run_live_on_ray(request_of(tiny, CONDITIONS), store=store)
    assert len(store) == 0


def test_cancel_stops_the_task_and_keeps_what_arrived(on_ray, tiny, tmp_path):
    store = ResultStore(tmp_path / "store")
    slow = VisualizeSettings(generations=400, restarts=2, popsize=6,
                             generator_options=(("size", 32),))
    conditions = [Condition(3, "positive", a) for a in (0.0, 0.1, 0.2)]
    request = request_of(tiny, conditions, slow)
    manager = JobManager(max_workers=1)
    job = visualize_job(manager, request, store=store)
    deadline = time.monotonic() + 120
    while job.done == 0 and time.monotonic() < deadline:  # progress arrives from the worker
        time.sleep(0.05)
    assert job.done > 0 and job.state == "running"
    job.cancel()
    assert job.wait(timeout=10) and job.state == "cancelled"
    assert len(store) < len(conditions)  # the condition that was running is not stored
    # the task let go of its CPU (a task left running would hold it)
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ray.available_resources().get("CPU", 0) == 2
    # the worker is free again: a small job runs to the end
    small = visualize_job(manager, request_of(tiny, CONDITIONS), store=store)
    assert len(small.result(timeout=120)) == 3
    manager.shutdown()


def raises_in_task():
    raise ValueError("unit 9999 is out of range for this readout (1000 units)")
    yield  # a generator function, as the tasks are


def test_a_task_error_comes_back_in_its_own_words(on_ray):
    with pytest.raises(ValueError, match="unit 9999 is out of range"):
        follow(raises_in_task, (), lambda kind, payload: None, lambda: False, address="local")


def probe(shared):
    """A task that says which worker ran it and whether the shared object was there already."""
    from signseg_core.sweeps import ray_jobs as on_worker

    there = shared[1] in on_worker._WORKER_CACHE
    yield "result", (os.getpid(), there, on_worker.unbox(shared))


def test_a_shared_object_is_put_once_and_fetched_once_per_worker(on_ray):
    # a model or GAN (hundreds of MB) goes to the object store once per dashboard process, and
    # each worker fetches it once and keeps it for the next tasks
    shared = ray_jobs.Shared(np.arange(10), "test:probe:1")
    seen = []
    for _ in range(4):
        follow(probe, (shared,), lambda kind, payload: seen.append(payload), lambda: False,
               address="local")
    assert len([k for k in ray_jobs._DRIVER_REFS if k[1] == "test:probe:1"]) == 1
    fetched = set()
    for pid, there, obj in seen:
        np.testing.assert_array_equal(obj, np.arange(10))
        assert there == (pid in fetched)  # fetched on a worker's first task only
        fetched.add(pid)
    assert len(seen) == 4 and len(fetched) <= 2  # two CPUs: at most two workers


def test_should_stop_before_anything_arrives_raises_cancelled(on_ray):
    def never(*_):
        time.sleep(60)
        yield "end", None

    with pytest.raises(JobCancelled):
        follow(never, (), lambda kind, payload: None, lambda: True, address="local")


def test_a_gradvis_job_on_ray_stores_the_channels_images(on_ray, tiny, tmp_path):
    store = ResultStore(tmp_path / "store")
    config = GradVisConfig(steps=5, image_size=32)
    manager = JobManager(max_workers=1)
    job = gradvis_job(manager, tiny, "2", [0, 1], config, store=store)
    arrays = job.result(timeout=120)
    here = visualize_channels(tiny, "2", [0, 1], site="input", config=config).arrays()
    assert arrays["images"].shape == here["images"].shape
    np.testing.assert_allclose(arrays["images"].astype(float), here["images"].astype(float),
                               atol=2)  # uint8 images: a rounding step apart at most
    stored = store.get(gradvis_key(tiny, "2", [0, 1], config))
    np.testing.assert_array_equal(stored[0]["images"], arrays["images"])
    manager.shutdown()


def test_the_pages_line_names_the_cluster_only_to_those_who_may_see_hosts(monkeypatch):
    monkeypatch.delenv(ray_jobs.ADDRESS_VARIABLE, raising=False)
    assert ray_jobs.ray_address() is None
    assert ray_jobs.describe_cluster() == "Background jobs run in this process."
    monkeypatch.setenv(ray_jobs.ADDRESS_VARIABLE, "  ")  # blank is unset
    assert ray_jobs.ray_address() is None
    monkeypatch.setenv(ray_jobs.ADDRESS_VARIABLE, "10.0.0.7:6379")
    assert "10.0.0.7:6379" in ray_jobs.describe_cluster(show_address=True)
    hidden = ray_jobs.describe_cluster(show_address=False)
    assert "10.0.0.7" not in hidden and "Ray cluster" in hidden


def test_the_explorer_says_estimates_are_this_machines_when_jobs_run_on_a_cluster(monkeypatch):
    from signseg_ui.live_view import on_this, precomputed_note

    monkeypatch.delenv(ray_jobs.ADDRESS_VARIABLE, raising=False)
    assert on_this("cpu") == "on this CPU" and on_this("cuda:0") == "on this GPU"
    assert precomputed_note("efficientnet_lite0").endswith("computed on this machine.")
    monkeypatch.setenv(ray_jobs.ADDRESS_VARIABLE, "auto")
    assert on_this("cpu") == "on this CPU (jobs run on the Ray cluster)"
    assert precomputed_note("efficientnet_lite0").endswith("computed on the Ray cluster.")
