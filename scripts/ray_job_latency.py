"""How long a dashboard job waits for its first progress on Ray, against the same job here.

Starts a local Ray (as ``SIGNSEG_RAY_ADDRESS=local`` does) and runs a small one-condition job of
EfficientNet-Lite0 (``fourier``, 1 restart × population 8 × 4 generations) three times on Ray,
for three units (the first on a fresh worker: it starts Python, imports torch and receives the
model; the next two on that worker, warm), then once in this process. Prints the seconds to the
first progress report and to the end of each.

    python scripts/ray_job_latency.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["SIGNSEG_RAY_ADDRESS"] = "local"

import ray  # noqa: E402

from signseg_core.conditions import Condition  # noqa: E402
from signseg_core.generators.catalog import make_generator  # noqa: E402
from signseg_core.models.registry import load_model  # noqa: E402
from signseg_core.optimize.live import run_live  # noqa: E402
from signseg_core.optimize.request import VisualizeRequest  # noqa: E402
from signseg_core.optimize.settings import VisualizeSettings  # noqa: E402
from signseg_core.ray_session import runtime_env as ray_runtime_env  # noqa: E402
from signseg_core.sweeps.ray_jobs import run_live_on_ray  # noqa: E402

SETTINGS = VisualizeSettings(generations=4, restarts=1, popsize=8)


def timed(run, model, unit: int) -> tuple[float, float]:
    """(seconds to the first progress report, seconds to the end) of ``run`` on ``unit``."""
    request = VisualizeRequest.build(model, [Condition(unit, "positive", 0.5)], SETTINGS,
                                     generator=make_generator("fourier"))
    first: list[float] = []
    start = time.perf_counter()
    run(request, store=False if run is run_live else None,
        progress=lambda *_: first or first.append(time.perf_counter() - start))
    return first[0], time.perf_counter() - start


def main() -> int:
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env=ray_runtime_env())
    print(f"Ray started in {time.perf_counter() - start:.2f} s")
    model = load_model("efficientnet_lite0")
    for unit, worker in ((5, "fresh"), (6, "warm"), (7, "warm")):
        first, end = timed(run_live_on_ray, model, unit)
        print(f"on Ray, {worker} worker, unit {unit}: first progress {first:.2f} s, "
              f"done {end:.2f} s")
    first, end = timed(run_live, model, 8)
    print(f"in this process, unit 8: first progress {first:.2f} s, done {end:.2f} s")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
