"""The dashboard's background jobs on a Ray cluster: with ``SIGNSEG_RAY_ADDRESS`` set, a job's
computation runs as a Ray task and its results come back to the dashboard's process, which alone
writes the store.

The job itself stays where it was (:mod:`signseg_core.jobs`, keyed and shared as before): only its
body changes from computing here to waiting on a task. The task is a Ray *streaming generator*:
it runs the computation in a thread and yields its events as they happen: progress (with the live
preview), each finished condition, the end. So the page's bar moves per scored batch, a condition
finished on the cluster is stored here the moment it arrives, and Cancel is ``ray.cancel`` of the
task (the worker's thread is asked to stop between batches; what arrived stays stored).

Keys do not change: the task computes exactly the conditions the job's request names, at the
precision that request's keys were made with (a laptop's fp32 runs at fp32 on the cluster's GPU),
and every result that comes back is checked against the key it must fill before it is stored, so
the store never holds a result under another's key.

``SIGNSEG_RAY_ADDRESS``: ``auto`` (the cluster this machine belongs to), ``HOST:PORT``,
``ray://HOST:10001`` (Ray Client, from outside the cluster), or ``local`` (a Ray started in this
process, for trying it out). A task asks for ``SIGNSEG_RAY_GPUS`` GPUs (default 1; a fraction
shares one) when the cluster has GPUs, else for one CPU.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch

from signseg_core.jobs import JobCancelled, ProgressFn
from signseg_core.optimize.gradvis import visualize_channels
from signseg_core.optimize.live import LiveRun, run_live
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.results import save_condition
from signseg_core.ray_session import connect
from signseg_core.store import ResultStore

ADDRESS_VARIABLE, GPUS_VARIABLE = "SIGNSEG_RAY_ADDRESS", "SIGNSEG_RAY_GPUS"
#: Seconds between two progress events a task sends (results and the end are sent at once).
PROGRESS_EVERY_S = 0.2
#: Emit(kind, payload): how a computation on a worker sends an event to the dashboard.
Emit = Callable[[str, object], None]
#: Shared objects a worker keeps (models and generators), and references the dashboard keeps.
WORKER_CACHE_SIZE, DRIVER_CACHE_SIZE = 4, 4
_SHARED_TAG = "signseg-shared"
_WORKER_CACHE: dict[str, object] = {}
_DRIVER_REFS: dict[tuple, object] = {}


def ray_address() -> str | None:
    """The cluster the dashboard's jobs run on (``$SIGNSEG_RAY_ADDRESS``), None when unset or
    empty: jobs then run in this process."""
    return os.environ.get(ADDRESS_VARIABLE, "").strip() or None


def describe_cluster(*, show_address: bool = True) -> str:
    """One line for the pages: where background jobs run (the cluster's address only with
    ``show_address``: it names a host of the lab's network)."""
    address = ray_address()
    where = f" at {address}" if show_address else ""
    return ("Background jobs run in this process." if address is None else
            f"Background jobs run on a Ray cluster{where} ({ADDRESS_VARIABLE}); their results "
            "are stored here.")


# -- the worker's side ----------------------------------------------------------------------------
def streamed(compute: Callable[[Emit, Callable[[], bool]], None]) -> Iterator[tuple[str, object]]:
    """Run ``compute(emit, should_stop)`` in a thread and yield its events ``(kind, payload)``
    as they come, progress events at most every :data:`PROGRESS_EVERY_S` (the last one kept);
    an exception in ``compute`` is raised here. Closing the generator (``ray.cancel`` raises in
    it) asks ``compute`` to stop and waits for it, so the worker is free for the next task."""
    events: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def emit(kind: str, payload: object) -> None:
        events.put((kind, payload))

    def work() -> None:
        try:
            compute(emit, stop.is_set)
            events.put(("end", None))
        except BaseException as exc:  # handed to the generator, which raises it in the task
            events.put(("error", exc))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    last_sent, held = 0.0, None
    try:
        while True:
            try:
                kind, payload = events.get(timeout=PROGRESS_EVERY_S)
            except queue.Empty:
                kind, payload = "tick", None
            if kind == "progress":
                held = payload
            if held is not None and (kind != "progress"
                                     or time.monotonic() - last_sent >= PROGRESS_EVERY_S):
                yield "progress", held
                held, last_sent = None, time.monotonic()
            if kind == "error":
                raise payload
            if kind in ("result", "end"):
                yield kind, payload
            if kind == "end":
                return
    finally:
        stop.set()
        thread.join()


@dataclass(frozen=True)
class Shared:
    """A task argument sent once per cluster and kept by the workers: ``obj`` (a model, a
    generator: up to hundreds of MB) under ``identity`` (its name and weight fingerprint).
    :func:`follow` puts it in Ray's object store once per dashboard process and passes the
    reference inside a list, which Ray hands over unresolved; a worker fetches it only when
    its own cache lacks that identity (:func:`unbox`)."""

    obj: object
    identity: str


def unbox(value):
    """A task argument as the task uses it: a shared object from this worker's cache, fetched
    from the object store the first time; anything else as it came."""
    if not (isinstance(value, tuple) and len(value) == 3 and value[0] == _SHARED_TAG):
        return value
    _, identity, boxed = value
    if identity not in _WORKER_CACHE:
        import ray  # deferred: only ever called inside a Ray task, where Ray is loaded

        _WORKER_CACHE[identity] = ray.get(boxed[0])
        while len(_WORKER_CACHE) > WORKER_CACHE_SIZE:  # oldest first: dicts keep order
            _WORKER_CACHE.pop(next(iter(_WORKER_CACHE)))
    return _WORKER_CACHE[identity]


def to_worker_gpu(model, generator=None) -> None:
    """Move ``model`` (and ``generator``) to this worker's GPU when it has one, in place: they
    are this worker's copies (:func:`unbox`)."""
    if torch.cuda.is_available():
        model.module.to("cuda")
        model.trunk.to("cuda")  # shares the parameters; its own buffers move here
        if generator is not None:
            generator.to("cuda")


def on_worker_device(request: VisualizeRequest, precision: str) -> VisualizeRequest:
    """The request moved to this worker's GPU when it has one, run at ``precision`` (the one the
    request's keys were made with where it was built), so the keys come out the same."""
    to_worker_gpu(request.model, request.generator)
    settings = replace(request.settings, precision=precision)
    return VisualizeRequest(request.model, request.generator, request.conditions, settings)


def live_task(model, generator, conditions, settings, precision: str, first,
              batch_size: int | None):
    """The Ray task behind a visualize job: :func:`run_live` of the request made of these
    (``model`` and ``generator`` as :func:`follow` sends a :class:`Shared`) here, storing
    nothing, each result sent as it finishes."""
    request = on_worker_device(VisualizeRequest(unbox(model), unbox(generator), conditions,
                                                settings), precision)

    def compute(emit: Emit, should_stop: Callable[[], bool]) -> None:
        run_live(request, first=first, store=False, batch_size=batch_size, should_stop=should_stop,
                 progress=lambda *report: emit("progress", report),
                 on_result=lambda result: emit("result", result))

    yield from streamed(compute)


def gradvis_task(model, layer: str, channels: list[int], config):
    """The Ray task behind a gradvis job: the channels' images, sent as one result."""
    model = unbox(model)
    to_worker_gpu(model)

    def compute(emit: Emit, should_stop: Callable[[], bool]) -> None:
        result = visualize_channels(
            model, layer, channels, site="input", config=config, should_stop=should_stop,
            progress=lambda done, total, _objective: emit(
                "progress", (done, total, f"step {done}/{total}", None)))
        if not result.cancelled:
            emit("result", result.arrays())

    yield from streamed(compute)


# -- the dashboard's side -------------------------------------------------------------------------
def follow(task, args: tuple, on_event: Callable[[str, object], None],
           should_stop: Callable[[], bool], *, address: str | None = None) -> None:
    """Submit ``task(*args)`` (a generator function above) to the cluster and hand each event
    it yields to ``on_event``, until it ends; ``should_stop()`` is asked at least every 0.25 s
    and cancels the task (:class:`~signseg_core.jobs.JobCancelled`). An exception in the task
    is raised here in its own words."""
    ray = connect(None if address in (None, "local") else address)
    args = tuple(boxed(ray, a) if isinstance(a, Shared) else a for a in args)
    gpus = ray.cluster_resources().get("GPU", 0) > 0
    options = ({"num_gpus": float(os.environ.get(GPUS_VARIABLE) or 1), "num_cpus": 0} if gpus
               else {"num_cpus": 1})
    generator = ray.remote(task).options(num_returns="streaming", max_retries=0,
                                         **options).remote(*args)
    while True:
        if should_stop():
            ray.cancel(generator)
            raise JobCancelled("cancelled")
        ready, _ = ray.wait([generator], timeout=0.25)
        if not ready:
            continue
        try:
            ref = next(generator)
        except StopIteration:
            return
        try:
            kind, payload = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # raised in the task: its own sentence
            raise (getattr(exc, "cause", None) or exc) from None
        on_event(kind, payload)


def boxed(ray, shared: Shared) -> tuple:
    """``shared`` as a task argument: its object put in the object store once per Ray session
    of this process (the last :data:`DRIVER_CACHE_SIZE` kept), its reference in a list."""
    key = (ray.get_runtime_context().get_job_id(), shared.identity)
    if key not in _DRIVER_REFS:
        _DRIVER_REFS[key] = ray.put(shared.obj)
        while len(_DRIVER_REFS) > DRIVER_CACHE_SIZE:  # oldest first; Ray frees it when unused
            _DRIVER_REFS.pop(next(iter(_DRIVER_REFS)))
    return _SHARED_TAG, shared.identity, [_DRIVER_REFS[key]]


def identity(obj) -> str:
    """What a model or generator is, for :class:`Shared`: its name and weight fingerprint."""
    return f"{type(obj).__name__}:{obj.name}:{obj.fingerprint}"


def run_live_on_ray(request: VisualizeRequest, *, first=None, store: ResultStore | None,
                    batch_size: int | None = None, progress: ProgressFn | None = None,
                    should_stop: Callable[[], bool] = lambda: False,
                    address: str | None = None) -> LiveRun:
    """:func:`~signseg_core.optimize.live.run_live` with the evolutions on the cluster: stored
    results read here, the missing conditions sent as one task, each result checked against its
    key and stored here as it arrives. A cancel raises :class:`~signseg_core.jobs.JobCancelled`
    after storing what arrived."""
    found = request.stored(store) if store is not None else {}
    missing = tuple(c for c in request.conditions if c.key not in found)
    results = {request.keys[i]: found[c.key] for i, c in enumerate(request.conditions)
               if c.key in found}
    if missing:
        todo = VisualizeRequest(request.model, request.generator, missing, request.settings)
        expected = set(todo.keys)

        def on_event(kind: str, payload) -> None:
            if kind == "progress" and progress is not None:
                progress(*payload)
            elif kind == "result":
                if payload.key not in expected:  # never store a result under another's key
                    raise RuntimeError(f"the cluster returned a result for {payload.key}, "
                                       "which this job did not ask for")
                if store is not None:
                    save_condition(store, payload)
                results[payload.key] = payload

        args = (Shared(todo.model, identity(todo.model)),
                Shared(todo.generator, identity(todo.generator)), todo.conditions,
                todo.settings, todo.precision, first, batch_size)
        follow(live_task, args, on_event, should_stop, address=address or ray_address())
    return LiveRun([results[k] for k in request.keys if k in results], False)


def gradvis_on_ray(model, layer: str, channels: list[int], config, *,
                   progress: ProgressFn, should_stop: Callable[[], bool],
                   address: str | None = None) -> dict:
    """The arrays of :meth:`~signseg_core.optimize.gradvis.GradVisResult.arrays`, computed on
    the cluster (:func:`gradvis_task`)."""
    arrays = {}

    def on_event(kind: str, payload) -> None:
        if kind == "progress":
            progress(*payload)
        elif kind == "result":
            arrays.update(payload)

    follow(gradvis_task, (Shared(model, identity(model)), layer, list(channels), config),
           on_event, should_stop, address=address or ray_address())
    if not arrays:
        raise RuntimeError("the cluster task ended without its images")
    return arrays
