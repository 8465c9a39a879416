"""Background jobs: shared by key, serial on one worker, observable, cancellable, never crash."""

from __future__ import annotations

import threading
import time

import pytest

from signseg_core.conditions import Condition
from signseg_core.jobs import JobCancelled, JobManager, default_manager
from signseg_core.models.registry import load_model
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.visualize import visualize
from signseg_core.sweeps.tasks import visualize_job

WAIT = 10.0  # generous upper bound on any wait; passing tests never come near it
SETTINGS = VisualizeSettings(generations=2, restarts=1, generator_options=(("size", 32),))


@pytest.fixture
def manager():
    m = JobManager(max_workers=1)
    yield m
    m.shutdown(cancel_pending=True, wait=True, timeout=WAIT)


def gated(value, gate: threading.Event, calls: list, started: threading.Event | None = None):
    """A job function that records its call, then waits for ``gate`` before returning."""
    def fn(progress, should_stop):
        calls.append(value)
        if started is not None:
            started.set()
        assert gate.wait(WAIT), "test never opened the gate"
        return value
    return fn


def until_stopped(started: threading.Event, seen: list, *, raise_cancelled=False):
    def fn(progress, should_stop):
        started.set()
        deadline = time.monotonic() + WAIT
        while not should_stop() and time.monotonic() < deadline:
            time.sleep(0.001)
        seen.append(should_stop())
        if raise_cancelled:
            raise JobCancelled("stopped")
        return "partial"
    return fn


# -- sharing and ordering --------------------------------------------------------------------

def test_same_key_gives_the_same_job_and_runs_once(manager):
    gate, calls = threading.Event(), []
    a = manager.submit(("unit", 3), gated("A", gate, calls), label="first")
    b = manager.submit(("unit", 3), gated("B", gate, calls), label="second")
    assert a is b and a.subscribers == 2 and a.label == "first"
    gate.set()
    assert a.result(WAIT) == "A" and calls == ["A"]
    c = manager.submit(("unit", 3), gated("C", gate, calls))  # finished, still remembered
    assert c is a and c.result(0) == "A" and calls == ["A"] and c.subscribers == 3


def test_many_threads_asking_for_the_same_keys_share_one_job_each(manager):
    gate = threading.Event()
    calls: list = []
    got: dict[int, list] = {k: [] for k in range(5)}

    def session():
        for k in range(5):
            got[k].append(manager.submit({"key": k}, gated(k, gate, calls)))

    threads = [threading.Thread(target=session) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    gate.set()
    for k, jobs in got.items():
        assert len(jobs) == 8 and all(j is jobs[0] for j in jobs)
        assert jobs[0].subscribers == 8 and jobs[0].result(WAIT) == k
    assert sorted(calls) == [0, 1, 2, 3, 4]


def test_different_keys_run_one_at_a_time_in_submission_order(manager):
    gate, calls, started = threading.Event(), [], threading.Event()
    a = manager.submit("a", gated("A", gate, calls, started))
    b = manager.submit("b", gated("B", gate, calls))
    assert started.wait(WAIT)
    assert a.state == "running" and b.state == "queued" and calls == ["A"]
    gate.set()
    assert (a.result(WAIT), b.result(WAIT)) == ("A", "B") and calls == ["A", "B"]
    assert a.state == b.state == "done" and a.finished <= b.started


def test_progress_is_visible_while_running(manager):
    gate, reported = threading.Event(), threading.Event()

    def fn(progress, should_stop):
        progress(1, 3, "step one")
        reported.set()
        assert gate.wait(WAIT)
        progress(3, 3)
        return "ok"

    job = manager.submit("p", fn)
    assert reported.wait(WAIT)
    assert job.state == "running" and job.progress == pytest.approx(1 / 3)
    assert (job.done, job.total, job.message) == (1, 3, "step one")
    info = job.info()
    assert info["state"] == "running" and info["progress"] == pytest.approx(1 / 3, abs=1e-4)
    gate.set()
    assert job.result(WAIT) == "ok" and job.progress == 1.0 and job.elapsed_s() >= 0


def test_eta_is_extrapolated_from_the_rate_so_far():
    now = [100.0]
    m = JobManager(clock=lambda: now[0])
    gate, reported = threading.Event(), threading.Event()

    def fn(progress, should_stop):
        now[0] = 110.0  # ten seconds in ...
        progress(1, 4)  # ... a quarter done: thirty seconds to go
        reported.set()
        gate.wait(WAIT)

    job = m.submit("eta", fn)
    try:
        assert reported.wait(WAIT)
        assert job.elapsed_s() == 10.0 and job.eta_s() == pytest.approx(30.0)
    finally:
        gate.set()
        m.shutdown(wait=True, timeout=WAIT)


# -- cancelling and releasing ------------------------------------------------------------------

@pytest.mark.parametrize("raise_cancelled", [False, True])
def test_cancel_a_running_job(manager, raise_cancelled):
    started, seen = threading.Event(), []
    job = manager.submit("r", until_stopped(started, seen, raise_cancelled=raise_cancelled))
    assert started.wait(WAIT) and not job.should_stop()
    assert job.cancel() is True
    assert job.wait(WAIT) and seen == [True] and job.state == "cancelled"
    with pytest.raises(JobCancelled):
        job.result(0)
    assert job.cancel() is False  # already finished
    again = manager.submit("r", lambda progress, should_stop: "fresh")
    assert again is not job and again.result(WAIT) == "fresh"  # cancelled jobs are not shared


def test_cancel_a_queued_job_it_never_runs(manager):
    gate, calls, started = threading.Event(), [], threading.Event()
    blocker = manager.submit("blocker", gated("blocker", gate, calls, started))
    queued = manager.submit("queued", gated("queued", gate, calls))
    assert started.wait(WAIT)
    assert queued.cancel() and queued.state == "cancelled" and queued.wait(0)
    assert queued.started is None
    gate.set()
    after = manager.submit("after", gated("after", gate, calls))
    assert blocker.result(WAIT) == "blocker" and after.result(WAIT) == "after"
    assert calls == ["blocker", "after"]


def test_the_last_subscriber_to_release_cancels(manager):
    started, seen = threading.Event(), []
    job = manager.submit("shared", until_stopped(started, seen))
    assert manager.submit("shared", until_stopped(started, seen)) is job
    assert started.wait(WAIT) and job.subscribers == 2
    job.release()
    assert job.subscribers == 1 and not job.should_stop() and job.state == "running"
    job.release()
    assert job.subscribers == 0 and job.wait(WAIT) and job.state == "cancelled"
    assert seen == [True]


# -- failures ------------------------------------------------------------------------------------

def test_a_failing_job_keeps_its_error_and_the_next_job_still_runs(manager):
    def bad(progress, should_stop):
        raise ValueError("unit 7000 is out of range")

    job = manager.submit("bad", bad)
    assert job.wait(WAIT) and job.state == "failed"
    assert job.error == "ValueError: unit 7000 is out of range"
    assert "Traceback" in job.traceback and "bad" in job.traceback
    with pytest.raises(ValueError, match="unit 7000"):
        job.result(0)
    assert manager.submit("good", lambda p, s: 42).result(WAIT) == 42
    assert manager.submit("bad", lambda p, s: "retry") is job  # a failure is shared ...
    assert manager.forget("bad") and manager.get("bad") is None
    assert manager.submit("bad", lambda p, s: "retry").result(WAIT) == "retry"  # ... till forgot


def test_result_times_out_while_running(manager):
    gate, calls = threading.Event(), []
    job = manager.submit("slow", gated("x", gate, calls))
    with pytest.raises(TimeoutError):
        job.result(0.01)
    gate.set()
    assert job.result(WAIT) == "x"


# -- listing, pruning, shutting down -----------------------------------------------------------

def test_jobs_lists_only_queued_and_running_by_default(manager):
    gate, calls, started = threading.Event(), [], threading.Event()
    finished = manager.submit("finished", lambda p, s: "done")
    assert finished.result(WAIT) == "done"
    running = manager.submit("running", gated("r", gate, calls, started))
    queued = manager.submit("queued", gated("q", gate, calls))
    assert started.wait(WAIT)
    assert manager.jobs() == [running, queued]
    assert manager.jobs(active_only=False) == [finished, running, queued]
    gate.set()
    assert queued.result(WAIT) == "q" and manager.jobs() == []


def test_finished_jobs_are_forgotten_past_the_count_and_the_age():
    now = [0.0]
    m = JobManager(keep_finished=2, keep_seconds=60.0, clock=lambda: now[0])
    try:
        jobs = []
        for k in range(3):
            now[0] = float(k)
            jobs.append(m.submit(k, lambda p, s, k=k: k))
            assert jobs[-1].result(WAIT) == k
        assert m.jobs(active_only=False) == jobs[1:]  # job 0 was the oldest of three
        assert m.get(0) is None and m.get(1) is jobs[1]
        now[0] = 61.5  # job 1 finished at t = 1, job 2 at t = 2
        assert m.jobs(active_only=False) == [jobs[2]]
    finally:
        m.shutdown(wait=True, timeout=WAIT)


def test_shutdown_cancels_pending_jobs_and_refuses_new_ones():
    m = JobManager()
    started, seen, calls = threading.Event(), [], []
    running = m.submit("r", until_stopped(started, seen))
    queued = m.submit("q", gated("q", threading.Event(), calls))
    assert started.wait(WAIT)
    m.shutdown(wait=True, timeout=WAIT)
    assert running.state == queued.state == "cancelled" and calls == [] and m.closed
    with pytest.raises(RuntimeError, match="shut down"):
        m.submit("late", lambda p, s: None)


def test_default_manager_is_one_per_process_until_shut_down():
    m = default_manager()
    assert default_manager() is m and m.max_workers == 1
    m.shutdown()
    fresh = default_manager()
    assert fresh is not m and not fresh.closed


@pytest.mark.parametrize("kwargs", [{"max_workers": 0}, {"max_workers": True},
                                    {"keep_finished": -1}, {"keep_seconds": 0.0}])
def test_bad_options_are_refused_by_name(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        JobManager(**kwargs)


# -- the visualization job ------------------------------------------------------------------------

def test_visualize_job_completes_and_stores_its_results(manager, tiny, store):
    conds = [Condition(4, "negative", 0.5), Condition(2, "positive", 1.0)]
    request = VisualizeRequest.build(tiny, conds, SETTINGS)
    job = visualize_job(manager, request, store=store)
    results = job.result(WAIT * 3)
    # progress counts images: 2 conditions x 1 restart x popsize x 2 generations
    images = 2 * 1 * request.popsize * 2
    assert job.state == "done" and (job.done, job.total) == (images, images)
    assert job.message == "2/2 conditions stored" and "tiny_test" in job.label
    assert [r.condition.key for r in results] == [(2, "positive", 1.0), (4, "negative", 0.5)]
    assert not any(r.cancelled for r in results)
    assert len(store) == 2 and all(r.key in store for r in results)
    again = visualize(tiny, conds, settings=SETTINGS, store=store)
    assert all(r.from_store for r in again)


def test_identical_visualize_requests_share_one_job(manager, tiny, store):
    conds = [Condition(1, "positive", 0.5), Condition(3, "negative", 1.0)]
    a = visualize_job(manager, VisualizeRequest.build(tiny, conds, SETTINGS), store=store)
    b = visualize_job(manager, VisualizeRequest.build(tiny, conds[::-1], SETTINGS), store=store)
    assert a is b and a.subscribers == 2
    seed1 = VisualizeSettings(generations=2, restarts=1, seed=1, generator_options=(("size", 32),))
    other = visualize_job(manager, VisualizeRequest.build(tiny, conds, seed1), store=store)
    assert other is not a
    assert len(a.result(WAIT * 3)) == 2 and len(other.result(WAIT * 3)) == 2


def test_cancelling_a_visualize_job_midway_stores_nothing(manager, store):
    model = load_model("tiny_test")  # our own copy: the hook below must not touch a shared one
    inside, go = threading.Event(), threading.Event()
    calls = []

    def hold_first_generation(module, inputs, output):
        calls.append(1)
        if len(calls) == 1:
            inside.set()
            go.wait(WAIT)

    handle = model.trunk.register_forward_hook(hold_first_generation)
    try:
        settings = VisualizeSettings(generations=3, restarts=1, generator_options=(("size", 32),))
        request = VisualizeRequest.build(model, [Condition(5, "positive", 1.0)], settings)
        job = visualize_job(manager, request, store=store, batch_size=8)
        assert inside.wait(WAIT * 3) and job.state == "running"
        job.cancel()
        go.set()
        assert job.wait(WAIT * 3) and job.state == "cancelled"
    finally:
        go.set()
        handle.remove()
    # Cancelled inside generation 1: its first chunk of 8 was scored, the second never began
    # (the stop is checked between scored batches, not only between generations).
    assert (job.done, job.total) == (8, 3 * request.popsize) and request.popsize > 8
    assert len(store) == 0
    with pytest.raises(JobCancelled):
        job.result(0)


def test_eta_follows_the_rate_since_the_first_report_not_the_start_up():
    now = [100.0]
    m = JobManager(clock=lambda: now[0])
    gate, step = threading.Event(), threading.Semaphore(0)
    moves = [(130.0, 10), (132.0, 30)]  # 30 s of start-up, then 20 images in 2 s: 10 img/s

    def fn(progress, should_stop):
        for t, done in moves:
            now[0] = t
            progress(done, 100)
            step.release()
        gate.wait(WAIT)

    job = m.submit("eta2", fn, expected_s=50.0)
    try:
        assert step.acquire(timeout=WAIT) and step.acquire(timeout=WAIT)
        # 70 images left at (30 - 10) / (132 - 130) = 10 img/s: 7 s. Extrapolating from the
        # start instead would say 32 s * 0.7 / 0.3 = 74.7 s.
        assert job.eta_s() == pytest.approx(7.0)
    finally:
        gate.set()
        m.shutdown(wait=True, timeout=WAIT)


def test_eta_starts_from_the_expected_time_and_never_goes_below_zero():
    now = [0.0]
    m = JobManager(clock=lambda: now[0])
    gate, reported = threading.Event(), threading.Event()

    def fn(progress, should_stop):
        now[0] = 4.0
        progress(0, 100)  # started, nothing scored yet
        reported.set()
        gate.wait(WAIT)

    job = m.submit("eta3", fn, expected_s=10.0)
    try:
        assert job.eta_s() in (10.0, 6.0)  # queued: 10; running at t = 4: 10 - 4
        assert reported.wait(WAIT)
        assert job.eta_s() == pytest.approx(6.0)
        now[0] = 30.0  # longer than expected, still no progress: 0, not negative
        assert job.eta_s() == 0.0
    finally:
        gate.set()
        m.shutdown(wait=True, timeout=WAIT)


def test_payload_is_kept_as_latest_and_watchers_keep_a_job_alive():
    m = JobManager()
    gate, reported = threading.Event(), threading.Event()

    def fn(progress, should_stop):
        progress(1, 2, "half", {"image": 1})
        progress(1, 2, "still half")  # no payload: the last one stays
        reported.set()
        while not should_stop() and not gate.is_set():
            time.sleep(0.01)
        if should_stop():
            raise JobCancelled("stopped")
        return "ok"

    job = m.submit("watch", fn)
    try:
        assert reported.wait(WAIT) and job.latest == {"image": 1} and job.message == "still half"
        assert m.submit("watch", fn) is job and job.subscribers == 2  # a second session joins
        job.release()  # the first one lets go: the second still watches
        assert not job.cancel_requested and job.is_active
        job.release()  # the last one out stops it
        assert job.wait(WAIT) and job.state == "cancelled"
        assert m.get("watch") is None  # a cancelled job is never joined
    finally:
        gate.set()
        m.shutdown(wait=True, timeout=WAIT)


def test_a_job_is_cancelled_only_when_no_other_watcher_was_seen_lately():
    now = [0.0]
    m = JobManager(clock=lambda: now[0])
    gate, started = threading.Event(), threading.Event()

    def fn(progress, should_stop):
        started.set()
        while not should_stop() and not gate.is_set():
            time.sleep(0.01)
        if should_stop():
            raise JobCancelled("stopped")

    job = m.submit("shared", fn)
    try:
        assert started.wait(WAIT)
        job.seen("a")
        now[0] = 5.0
        job.seen("b")
        assert sorted(job.watchers()) == ["a", "b"]
        assert not job.leave("a") and not job.cancel_requested  # b was seen 0 s ago: goes on
        now[0] = 16.0  # b's tab closed 11 s ago: past the 10 s of staleness
        assert job.watchers() == []
        job.seen("a")  # a comes back, then cancels: nobody else is watching any more
        assert job.leave("a") and job.wait(WAIT) and job.state == "cancelled"
    finally:
        gate.set()
        m.shutdown(wait=True, timeout=WAIT)
