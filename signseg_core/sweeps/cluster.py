"""Sweeps on a Ray cluster: the evolutions as Ray tasks, the store and the tables on the driver.

:func:`run_sweep_on_ray` splits a :class:`~signseg_core.sweeps.run.SweepSpec` into one task per
(model, unit): the unit's requests, one per generator, evolved in lockstep as
:func:`~signseg_core.optimize.visualize.run_request` would evolve them in one process. A task
returns its :class:`~signseg_core.optimize.results.ConditionResult` objects (codes, scores,
images); only the driver writes them to the store, as each task returns, so the store never has
writers on other machines. Then the driver runs :func:`~signseg_core.sweeps.run.run_sweep`
itself, which finds every evolution stored and measures the metric rows as it always does.

Why the results are identical to one process: each restart's seed comes from its condition's key
alone (:func:`~signseg_core.optimize.settings.evolution_seed`) and a unit's conditions evolve in
the same lockstep batch either way, so a worker computes the same codes and scores bit for bit
(``tests/test_cluster.py`` checks it on a local Ray).

Faults: a task whose worker process dies is retried by Ray (``max_retries``); an exception in a
task (missing weights, a bad unit) is not retried: the other tasks finish and are stored first,
then the sweep fails with that exception's sentence. A driver that stops and starts again submits
only the units whose results the store lacks.

Ray is imported when a cluster sweep starts (``ray.init(address)`` unless Ray is already
initialised; ``address=None`` starts a local Ray, or joins ``$RAY_ADDRESS``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from signseg_core import paths
from signseg_core.generators.catalog import list_generators, make_generator
from signseg_core.models.registry import get_entry, load_model
from signseg_core.models.zoo import resolve_device
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.results import save_condition
from signseg_core.optimize.settings import condition_key
from signseg_core.optimize.throughput import cached_rate, images_per_second
from signseg_core.optimize.visualize import run_request
from signseg_core.ray_session import connect
from signseg_core.store import ResultStore, default_store
from signseg_core.sweeps.run import SweepResult, SweepSpec, run_sweep

#: Retries of a task whose worker process died (not of one that raised).
MAX_RETRIES = 3
_WORKER_MODELS: dict = {}  # a worker process keeps the models it loaded, for its next tasks


@dataclass(frozen=True)
class ClusterPlan:
    """What a cluster sweep submits: ``(model, unit)`` pairs whose results the store lacks,
    those it already holds, and the images one unit of each model scores (for images/s)."""

    submit: tuple[tuple[str, int], ...]
    stored: tuple[tuple[str, int], ...]
    images_per_unit: dict


def plan(spec: SweepSpec, store: ResultStore, device: str | torch.device = "cpu") -> ClusterPlan:
    """Which units of ``spec`` still need evolving, from the store alone (the models are loaded
    on the CPU to read their fingerprints; keys use the precision that runs on ``device``)."""
    submit, stored, images = [], [], {}
    for name in spec.models:
        model = load_model(name, device="cpu")
        generators = spec.generators_for(model)
        for unit in spec.units:
            requests = spec.requests(model, generators, unit)
            images[name] = sum(r.images_to_score for r in requests)
            keys = [condition_key(model, generators[r.settings.generator], c, r.settings,
                                  r.settings.precision_on(device))
                    for r in requests for c in r.conditions]
            (stored if all(k in store for k in keys) else submit).append((name, unit))
    return ClusterPlan(tuple(submit), tuple(stored), images)


def progress_file(spec: SweepSpec) -> Path:
    """Where a cluster sweep of ``spec`` keeps its progress: ``<cache>/cluster/<digest>.json``
    (one file per spec, so a resumed sweep continues its own record)."""
    text = json.dumps(dataclasses.asdict(spec), sort_keys=True, default=str)
    return paths.cache_dir() / "cluster" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"


def record_progress(spec: SweepSpec, done: int, total: int, rate: float, state: str,
                    *, started: float, clock: Callable[[], float] = time.time) -> None:
    """Write a cluster sweep's progress where any process on this machine reads it (the
    dashboard's Home): written to a temporary file and renamed, so a reader never sees half."""
    path = progress_file(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"sweep": f"{', '.join(spec.models)}: {len(spec.units)} units, image set "
                       f"{spec.image_set}",
              "units_done": done, "units_total": total, "images_per_s": round(rate, 1),
              "state": state, "started": started, "updated": clock()}
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    part.write_text(json.dumps(record))
    os.replace(part, path)


def cluster_sweeps(*, within_s: float = 6 * 3600,
                   clock: Callable[[], float] = time.time) -> list[dict]:
    """The progress records of cluster sweeps updated in the last ``within_s`` seconds, newest
    first (unreadable files are skipped: a record is a display, never an input)."""
    folder = paths.cache_dir() / "cluster"
    records = []
    for path in folder.glob("*.json") if folder.is_dir() else ():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and clock() - record.get("updated", 0) <= within_s:
            records.append(record)
    return sorted(records, key=lambda r: r["updated"], reverse=True)


def evolve_unit(spec: SweepSpec, name: str, unit: int, device: str, batch_size: int | None,
                threads: int, before: Callable[[str, int], None] | None = None) -> list:
    """One task: every condition of ``unit`` of model ``name``, all generators, evolved here and
    returned (nothing stored), with ``threads`` torch threads: a CPU's float sums depend on how
    they are split, so a worker uses the driver's count to compute the driver's bits (Ray would
    give it one). ``before(name, unit)`` runs first (fault drills in tests)."""
    if before is not None:
        before(name, unit)
    torch.set_num_threads(threads)
    key = (name, str(device))
    if key not in _WORKER_MODELS:
        _WORKER_MODELS[key] = load_model(name, device=device)
    model = _WORKER_MODELS[key]
    generators = spec.generators_for(model)
    return [result for request in spec.requests(model, generators, unit)
            for result in run_request(request, store=False, batch_size=batch_size)]


def evolve_on_ray(spec: SweepSpec, *, address: str | None = None, device="cpu",
                  store: ResultStore | None = None, batch_size: int | None = None,
                  gpus_per_task: float = 1.0,
                  progress: Callable[[int, int, float], None] | None = None,
                  before: Callable[[str, int], None] | None = None) -> ClusterPlan:
    """Evolve the units of ``spec`` that ``store`` lacks as Ray tasks and store each task's
    results on this process as it returns.

    ``device`` is where the tasks run: ``"cuda"`` asks Ray for ``gpus_per_task`` GPUs a task
    (a fraction shares a GPU), anything else for as many CPUs as this process's torch threads.
    ``progress(units_done, units_total, images_per_second)`` after each task. Returns the plan that ran. Raises the first task's
    exception (in its own words) once every other task has finished and been stored.
    """
    store = store if store is not None else default_store()
    work = plan(spec, store, device)
    if not work.submit:
        return work
    started = time.time()
    record_progress(spec, 0, len(work.submit), 0.0, "running", started=started)
    ray = connect(address)
    cuda = torch.device(device).type == "cuda"
    threads = torch.get_num_threads()
    task = ray.remote(evolve_unit).options(
        num_gpus=gpus_per_task if cuda else 0, num_cpus=0 if cuda else threads,
        max_retries=MAX_RETRIES, retry_exceptions=False)
    pending = {task.remote(spec, name, unit, str(device), batch_size, threads, before):
               (name, unit) for name, unit in work.submit}
    failures, done, images, rate, start = [], 0, 0, 0.0, time.perf_counter()
    while pending:
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        pending_unit = pending.pop(ref)
        try:
            results = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # raised in the task: its own sentence
            failures.append(getattr(exc, "cause", None) or exc)
            continue
        for result in results:
            save_condition(store, result)
        done, images = done + 1, images + work.images_per_unit[pending_unit[0]]
        rate = images / max(time.perf_counter() - start, 1e-9)
        record_progress(spec, done, len(work.submit), rate, "running", started=started)
        if progress is not None:
            progress(done, len(work.submit), rate)
    state = f"failed: {failures[0]}" if failures else "evolved"
    record_progress(spec, done, len(work.submit), rate, state, started=started)
    if failures:
        raise failures[0]
    return work


def run_sweep_on_ray(spec: SweepSpec, *, address: str | None = None, device="cpu",
                     store: ResultStore | None = None, batch_size: int | None = None,
                     gpus_per_task: float = 1.0, progress: Callable[[str], None] | None = None,
                     units_done: Callable[[int, int, float], None] | None = None,
                     before: Callable[[str, int], None] | None = None) -> SweepResult:
    """:func:`~signseg_core.sweeps.run.run_sweep` with the evolutions on Ray
    (:func:`evolve_on_ray`, reporting to ``units_done``) and the metrics measured here, on this
    machine's ``device`` when it has one, else its CPU (the keys agree: precision other than
    fp32 needs CUDA here too). ``progress`` gets run_sweep's messages."""
    store = store if store is not None else default_store()
    here = device if torch.device(device).type != "cuda" or torch.cuda.is_available() else "cpu"
    if spec.settings.precision_on(resolve_device(here)) != spec.settings.precision_on(device):
        raise ValueError(f"{spec.settings.precision} runs only on CUDA: measure this sweep on a "
                         "driver with a CUDA device, or use --precision fp32")
    evolve_on_ray(spec, address=address, device=device, store=store, batch_size=batch_size,
                  gpus_per_task=gpus_per_task, before=before, progress=units_done)
    return run_sweep(spec, device=here, store=store, batch_size=batch_size, progress=progress)


def dry_run_table(spec: SweepSpec, device: str | torch.device = "cuda") -> pd.DataFrame:
    """The sweep's size per (model, generator), with its projected hours on ``device``.

    One row per pair: units, conditions per unit, restarts, generations, population,
    evolutions, images scored, and ``hours`` = images / that pair's images/s on ``device``
    (:func:`~signseg_core.optimize.throughput.images_per_second`: measured here on one chunk
    when this machine has ``device``, else the figure a run here stored), NaN where there is
    none. Networks and GANs whose weights are missing are counted on random weights of the same
    architecture (the same sizes), and get no rate.
    """
    rows, listed = [], {e["name"]: e for e in list_generators()}
    here = torch.device(device).type == "cpu" or torch.cuda.is_available()
    on = device if here else "cpu"
    for name in spec.models:
        real = get_entry(name).source().present
        model = load_model(name, device=on, untrained=not real)
        for g in spec.generator_names:
            present = listed[g]["weights_present"]
            generator = make_generator(g, device=on, untrained=not present,
                                       **dict(spec.settings.generator_options))
            request = VisualizeRequest.for_unit(model, generator, spec.units[0],
                                                spec.settings_for(g), signs=spec.signs,
                                                alphas=spec.alphas)
            images = len(spec.units) * request.images_to_score
            real_pair = real and present  # a random network's rate: of no use
            rate = (None if not real_pair else images_per_second(request) if here
                    else cached_rate(request, device=device))
            rows.append({"model": name, "generator": g, "units": len(spec.units),
                         "conditions_per_unit": len(request.conditions),
                         "restarts": request.settings.restarts,
                         "generations": request.settings.generations,
                         "popsize": request.popsize,
                         "evolutions": len(spec.units) * len(request.conditions)
                         * request.settings.restarts,
                         "images": images, "images_per_s": rate,
                         "hours": images / rate / 3600 if rate else float("nan")})
    return pd.DataFrame(rows)

