"""How many images per second this machine scores, measured once per model, generator and device,
so that a Compute button can say how long it will take before anyone presses it.

:func:`images_per_second` times the scorer a run uses (generator → preprocessing → backbone →
readout row) on one chunk after a warm-up chunk, and keeps the figure in
``<cache>/throughput.json`` under a key naming the model and generator (with their weight
fingerprints), the device, torch's thread count and the chunk size. A finished run can
:func:`record_rate` what it really scored, which replaces the short measurement (a long run's
rate is the better estimate). Estimates are only that: another job sharing the machine slows a
run down, and the job's own ETA (:meth:`~signseg_core.jobs.Job.eta_s`) follows the real rate.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import torch

from signseg_core import paths
from signseg_core.ablation import ablated_readout
from signseg_core.conditions import Condition
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.visualize import default_batch_size, make_scorer

_LOCK = threading.Lock()
FILE_NAME = "throughput.json"


def rate_key(request: VisualizeRequest, batch_size: int, device=None) -> str:
    """What a measured rate depends on, as one string (on ``device``, default the model's)."""
    m, g = request.model, request.generator
    device = m.device if device is None else torch.device(device)
    return (f"{m.name}:{m.fingerprint[:12]}|{g.name}:{g.fingerprint[:12]}|{device}|"
            f"threads={torch.get_num_threads()}|batch={batch_size}|{request.precision}")


def _file() -> Path:
    return paths.cache_dir() / FILE_NAME


def _read() -> dict:
    try:
        data = json.loads(_file().read_text())
    except (OSError, ValueError):  # absent or damaged: measure again
        return {}
    return data if isinstance(data, dict) else {}


def _write(key: str, rate: float) -> None:
    with _LOCK:
        data = _read()
        data[key] = {"images_per_s": float(rate), "measured": time.strftime("%Y-%m-%d %H:%M")}
        part = _file().with_suffix(".part")
        part.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(part, _file())


def cached_rate(request: VisualizeRequest, batch_size: int | None = None,
                device=None) -> float | None:
    """The stored images/s for ``request``'s model and generator on ``device`` (default: the
    model's), or None."""
    device = request.model.device if device is None else torch.device(device)
    batch = batch_size or default_batch_size(device)
    entry = _read().get(rate_key(request, batch, device))
    rate = entry.get("images_per_s") if isinstance(entry, dict) else None
    return float(rate) if isinstance(rate, (int, float)) and rate > 0 else None


def images_per_second(request: VisualizeRequest, batch_size: int | None = None) -> float:
    """Images/s scoring ``request`` on this machine: the stored figure, else measured now on
    one chunk after a warm-up (a second or two on a CPU) and stored."""
    batch = batch_size or default_batch_size(request.model.device)
    rate = cached_rate(request, batch)
    if rate is not None:
        return rate
    model, generator = request.model, request.generator
    rows, biases = ablated_readout(model.readout.weight, model.readout.bias,
                                  [Condition(0, "positive", 0.0)])
    rows = rows.to(model.device, torch.float32)
    biases = biases.to(model.device, torch.float32)
    score = make_scorer(model, generator, rows, biases, torch.zeros(1, dtype=torch.long,
                        device=model.device), batch, batch_size=batch,
                        precision=request.precision)
    codes = generator.initial_code(batch, seed=0).to(model.device)
    with torch.inference_mode():
        score(codes[: min(8, batch)])  # warm-up: first-call allocations and kernel choices
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        start = time.perf_counter()
        score(codes)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        rate = batch / max(time.perf_counter() - start, 1e-9)
    _write(rate_key(request, batch), rate)
    return rate


def record_rate(request: VisualizeRequest, images: int, seconds: float,
                batch_size: int | None = None) -> None:
    """Keep the rate a finished run really had (``images`` scored in ``seconds``); runs shorter
    than five seconds are ignored (warm-up dominates them)."""
    if seconds >= 5.0 and images > 0:
        _write(rate_key(request, batch_size or default_batch_size(request.model.device)),
               images / seconds)


def expected_seconds(request: VisualizeRequest, conditions: int, rate: float) -> float:
    """Seconds to evolve ``conditions`` of ``request`` at ``rate`` images/s (the final image
    pass per condition is a rounding error beside the evolutions)."""
    return conditions * request.images_per_condition / rate


def say_duration(seconds: float) -> str:
    """``"about 40 s"``, ``"about 3 min"``, ``"about 1.6 h"``."""
    if seconds < 90:
        return f"about {max(round(seconds), 1)} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"
