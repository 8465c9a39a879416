"""What the dashboard runs in the background: visualizations, gradient visualizations and metric
measurements, each submitted to a :class:`~signseg_core.jobs.JobManager` under a key made of the
store keys it will fill, so that every session asking for the same results shares one job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from signseg_core.jobs import Job, JobCancelled, JobManager, ProgressFn
from signseg_core.optimize.gradvis import visualize_channels
from signseg_core.conditions import Condition
from signseg_core.optimize.live import run_live
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.throughput import record_rate
from signseg_core.store import CODE_VERSION, ResultStore, default_store, key_digest
from signseg_core.sweeps.measure import cached_unit_rows, control_set, read_unit_rows
from signseg_core.sweeps.ray_jobs import gradvis_on_ray, ray_address, run_live_on_ray


def _resolve(store) -> ResultStore | None:
    """The store a job writes: ``store``, the default one for None, no store for False."""
    if store is False:
        return None
    return default_store() if store is None else store


def _store_dir(store) -> str | None:
    """The folder of ``store`` (None: :func:`~signseg_core.store.default_store`) for a job
    key; None when results are not stored (``store=False``)."""
    resolved = _resolve(store)
    return str(resolved.directory) if isinstance(resolved, ResultStore) else None


def visualize_job_key(request: VisualizeRequest | Sequence[VisualizeRequest], *,
                      store=None) -> dict:
    """The job key :func:`visualize_job` submits ``request`` (or several, pooled) under, in
    ``store`` (None: the default store; False: none): :meth:`VisualizeRequest.job_key`, over
    every request's keys."""
    requests = _as_requests(request)
    key = requests[0].job_key(_resolve(store))
    key["conditions"] = sorted(key_digest(k) for r in requests for k in r.keys)
    return key


def _as_requests(request) -> list[VisualizeRequest]:
    requests = [request] if isinstance(request, VisualizeRequest) else list(request)
    if not requests:
        raise ValueError("give at least one VisualizeRequest")
    return requests


def visualize_job(manager: JobManager, request: VisualizeRequest | Sequence[VisualizeRequest], *,
                  store: ResultStore | None | bool = None, batch_size: int | None = None,
                  label: str = "", first: Condition | None = None,
                  expected_s: float | None = None) -> Job:
    """Submit :func:`~signseg_core.optimize.live.run_live` of ``request`` (or of several, one
    after another: a pooled image set, one request per generator) as a job; requests for the
    same results (same keys, in any order) share one job.

    Parameters
    ----------
    request : what to compute; build its generator once and cache it (GAN weights are large).
    store : None for the default store; False to store nothing.
    batch_size : as for ``run_live``.
    label : shown in job lists; default :attr:`VisualizeRequest.label`.
    first : the condition to compute first (the one on screen), then its strip neighbours; it
        orders the work only, so it is not part of the job's key.
    expected_s : the estimate the job's ETA starts from (:mod:`signseg_core.optimize.throughput`).

    Returns
    -------
    Job whose result is ``list[ConditionResult]``, one per condition and generator, sorted by
    (``Condition.key``, generator) whatever the request's order, so requests that share the job
    read the same list. Progress counts images scored (after every scored batch); ``job.latest``
    holds the last :class:`~signseg_core.optimize.live.Preview`. A cancelled job raises
    :class:`~signseg_core.jobs.JobCancelled` within one scored batch; the condition that was
    running is not stored, those finished before stay stored.
    """
    requests, resolved = _as_requests(request), _resolve(store)

    def run(progress: ProgressFn, should_stop: Callable[[], bool]):
        sizes = [len(r.missing(resolved)) if resolved is not None else len(r.conditions)
                 for r in requests]
        total = sum(n * r.images_per_condition for n, r in zip(sizes, requests))
        before, results, start = 0, [], time.perf_counter()
        on_ray = ray_address() is not None  # on the cluster; stored here as results arrive
        for r, n in zip(requests, sizes):
            def report(done, _total, message, preview=None, _before=before):
                progress(_before + done, total, message, preview)
            if on_ray:
                live = run_live_on_ray(r, first=first, store=resolved, batch_size=batch_size,
                                       progress=report, should_stop=should_stop)
            else:
                live = run_live(r, first=first, store=resolved if resolved is not None else False,
                                batch_size=batch_size, progress=report, should_stop=should_stop)
            if live.cancelled:
                raise JobCancelled("cancelled")
            before += n * r.images_per_condition
            results += live.results
        if not on_ray:  # a cluster's rate is not this machine's
            record_rate(requests[0], before, time.perf_counter() - start, batch_size)
        return sorted(results, key=lambda res: (res.condition.key, res.key.generator))

    return manager.submit(visualize_job_key(requests, store=store), run,
                          label=label or requests[0].label, expected_s=expected_s)


def gradvis_key(model, layer: str, channels: Sequence[int], config) -> dict:
    """The store key of a sender-channel visualization: everything that determines it.

    Parameters
    ----------
    model : ZooModel; its name and weight fingerprint enter the key.
    layer : name of the layer whose input (sender) channels are visualized.
    channels : channel indices, in the order the images come back.
    config : :class:`~signseg_core.optimize.gradvis.GradVisConfig`.
    """
    return {"kind": "gradvis_channels", "code": CODE_VERSION, "model": model.name,
            "fingerprint": model.fingerprint, "layer": layer, "site": "input",
            "channels": [int(c) for c in channels], "config": config.to_dict()}


def gradvis_job_key(key: dict, *, store: ResultStore | None = None) -> dict:
    """The job key :func:`gradvis_job` submits the store key ``key`` (:func:`gradvis_key`)
    under: the key plus the folder of ``store`` (None: the default store)."""
    return {"job": "gradvis", "store": _store_dir(store), **key}


def gradvis_job(manager: JobManager, model, layer: str, channels: Sequence[int], config, *,
                store: ResultStore | None = None, label: str = "") -> Job:
    """Submit :func:`~signseg_core.optimize.gradvis.visualize_channels` of the input ``channels`` of
    ``layer`` as a job; identical requests share it.

    The job's result is the dict of arrays of
    :meth:`~signseg_core.optimize.gradvis.GradVisResult.arrays` (``images`` uint8 (N, S, S, 3) in
    [0, 255], ``channels`` ...), also put in ``store`` (None: the default store) under
    :func:`gradvis_key`. A cancelled job stores nothing.
    """

    key = gradvis_key(model, layer, channels, config)
    resolved = default_store() if store is None else store
    if not label:
        label = f"{model.name} {layer}: {len(channels)} channels, {config.steps} steps"

    def run(progress: ProgressFn, should_stop: Callable[[], bool]):
        if ray_address() is not None:  # on the cluster; stored here
            arrays = gradvis_on_ray(model, layer, key["channels"], config, progress=progress,
                                    should_stop=should_stop)
            resolved.put(key, arrays, meta={"model": model.name, "layer": layer})
            return arrays
        result = visualize_channels(
            model, layer, key["channels"], site="input", config=config, should_stop=should_stop,
            progress=lambda done, total, _objective: progress(done, total, f"step {done}/{total}"))
        if result.cancelled:
            raise JobCancelled("cancelled")
        arrays = result.arrays()
        resolved.put(key, arrays, meta={"model": model.name, "layer": layer})
        return arrays

    return manager.submit(gradvis_job_key(key, store=resolved), run, label=label)


def _check_unit_results(results: Sequence) -> None:
    """One unit's conditions with exactly one control per generator, else a ValueError saying
    what is wrong."""
    if not results:
        raise ValueError("results is empty; give one unit's ConditionResults")
    units = sorted({(r.key.model, r.key.unit) for r in results})
    if len(units) != 1:
        raise ValueError(f"results must be one model's one unit; got (model, unit) {units}")
    control_set(results)  # raises unless one control per generator


def stored_metric_rows(results: Sequence, metrics, *, store: ResultStore | None = None):
    """One unit's sweep metric rows and mean spectra as the sweep stored them, or None.

    Reads (never computes) the entry :func:`~signseg_core.sweeps.run.run_sweep` writes per unit,
    under ``metrics.key(results)`` (:class:`~signseg_core.sweeps.run.MetricKey`).

    Parameters
    ----------
    results : sequence of :class:`~signseg_core.optimize.results.ConditionResult`
        The unit's conditions in the order the sweep visualizes them
        (:func:`~signseg_core.ablation.condition_grid` of the unit: control, positive 0.1..1,
        negative 0.1..1); another order is another key.
    metrics : :class:`~signseg_core.sweeps.run.Metrics`, the metric setup (ensemble, LPIPS,
    detector).
    store : default :func:`~signseg_core.store.default_store`.

    Returns
    -------
    ``(rows, spectra)``: rows one per image (columns of ``run_sweep(...).table``; metric columns
    and ``alpha`` float), spectra one per (condition, frequency) (``model``, ``unit``, ``sign``,
    ``alpha``, ``freq``, ``power``); None when absent or unreadable.
    """
    resolved = default_store() if store is None else store
    return read_unit_rows(resolved, metrics.key(results))  # unreadable: None, measured again


def metrics_job_key(results: Sequence, metrics, *, store: ResultStore | None = None) -> dict:
    """The job key :func:`metrics_job` submits ``results`` under: the digest of the unit's
    :class:`~signseg_core.sweeps.run.MetricKey` and the store's folder (None: the default store)."""
    return {"job": "metrics", "store": _store_dir(store),
            "metrics": key_digest(metrics.key(results))}


def metrics_job(manager: JobManager, model, results: Sequence, metrics, *,
                store: ResultStore | None = None, label: str = "") -> Job:
    """Measure one unit's images as a sweep does (similarity, LPIPS, objectness, spectra) as a
    job, and store the rows where :func:`~signseg_core.sweeps.run.run_sweep` keeps them; identical
    requests share one job.

    Parameters
    ----------
    model : the unit's :class:`~signseg_core.models.zoo.ZooModel` (its class names label the rows).
    results : the unit's :class:`~signseg_core.optimize.results.ConditionResult`\\ s in the
        sweep's order (see :func:`stored_metric_rows`), exactly one of them the control.
    metrics : :class:`~signseg_core.sweeps.run.Metrics`; shared, only read.
    store : default :func:`~signseg_core.store.default_store`.
    label : shown in job lists; default names the model, unit and image count.

    Returns
    -------
    Job whose result is ``(rows, spectra)`` as :func:`stored_metric_rows` reads them back (the
    store keeps 15 significant digits). Rows already stored are read, not recomputed. The
    measurement is one call (``sweep.unit_rows``): cancelling stops a queued job at once and a
    running one when that call returns; what it measured is stored all the same (it is complete
    and correct), but the job ends ``cancelled`` with no result.

    Raises
    ------
    ValueError : ``results`` are not one unit's conditions with exactly one control.
    """
    _check_unit_results(results)
    resolved = default_store() if store is None else store
    results = list(results)
    n_images = sum(len(r.images) for r in results)
    if not label:
        label = (f"{model.name} unit {results[0].key.unit}: similarity, objectness and spectra "
                 f"of {n_images} images")

    def run(progress: ProgressFn, should_stop: Callable[[], bool]):
        if should_stop():
            raise JobCancelled("cancelled")
        progress(0, 1, f"measuring {n_images} images")
        measured = cached_unit_rows(resolved, results, metrics, model.class_names)
        progress(1, 1, "measured")
        # read back, so the job shows the very numbers a later page visit reads from the store
        return stored_metric_rows(results, metrics, store=resolved) or measured

    return manager.submit(metrics_job_key(results, metrics, store=resolved), run, label=label)
