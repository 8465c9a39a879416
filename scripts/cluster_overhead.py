"""What running a sweep's evolutions on Ray costs against one process, on this machine.

Evolves the same small sweep (EfficientNet-Lite0, ``fourier``) twice into fresh stores: in this
process (:func:`~signseg_core.optimize.visualize.run_request`, unit by unit, as ``run_sweep``
does) and as Ray tasks on a local Ray (:func:`~signseg_core.sweeps.cluster.evolve_on_ray`), then
checks that both stores hold the same bits. Prints and writes (``--out``) the wall times: Ray's
start, the first task's extra cost (a worker importing torch and loading the model), and the
evolution phase both ways. Metrics are measured on the driver either way, so they are left out.

    python scripts/cluster_overhead.py --out docs/data/cluster_overhead.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signseg_core.models.registry import load_model  # noqa: E402
from signseg_core.optimize.results import load_condition  # noqa: E402
from signseg_core.optimize.settings import VisualizeSettings  # noqa: E402
from signseg_core.optimize.visualize import run_request  # noqa: E402
from signseg_core.store import ResultStore  # noqa: E402
from signseg_core.ray_session import runtime_env as ray_runtime_env  # noqa: E402
from signseg_core.sweeps.cluster import evolve_on_ray  # noqa: E402
from signseg_core.sweeps.run import SweepSpec  # noqa: E402


def in_process(spec: SweepSpec, store: ResultStore) -> float:
    """Seconds to evolve every unit of ``spec`` here, into ``store``."""
    model = load_model(spec.models[0])
    generators = spec.generators_for(model)
    start = time.perf_counter()
    for unit in spec.units:
        for request in spec.requests(model, generators, unit):
            run_request(request, store=store)
    return time.perf_counter() - start


def same_bits(spec: SweepSpec, a: ResultStore, b: ResultStore) -> bool:
    model = load_model(spec.models[0])
    generators = spec.generators_for(model)
    for unit in spec.units:
        for key in spec.unit_keys(model, generators, unit):
            x, y = load_condition(a, key).arrays(), load_condition(b, key).arrays()
            if x.keys() != y.keys() or not all(np.array_equal(x[k], y[k]) for k in x):
                return False
    return True


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--units", type=int, nargs="+", default=[1, 373, 0, 701])
    p.add_argument("--generations", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = SweepSpec(models=("efficientnet_lite0",), units=tuple(args.units), alphas=(0.0, 1.0),
                     settings=VisualizeSettings(generations=args.generations, restarts=2,
                                                popsize=8))
    import ray  # deferred: the benchmark starts its own local Ray after the baseline

    with tempfile.TemporaryDirectory() as tmp:
        one, on_ray = ResultStore(Path(tmp) / "one"), ResultStore(Path(tmp) / "ray")
        alone_s = in_process(spec, one)
        start = time.perf_counter()
        ray.init(num_cpus=args.threads, include_dashboard=False, log_to_driver=False,
                 runtime_env=ray_runtime_env())
        init_s = time.perf_counter() - start
        marks = []
        start = time.perf_counter()
        evolve_on_ray(spec, store=on_ray, progress=lambda d, n, r: marks.append(
            time.perf_counter() - start))
        ray_s = time.perf_counter() - start
        identical = same_bits(spec, one, on_ray)
        ray.shutdown()
    per_unit = alone_s / len(spec.units)
    report = {"units": list(spec.units), "conditions_per_unit": 3, "restarts": 2, "popsize": 8,
              "generations": args.generations, "threads": args.threads,
              "in_process_s": round(alone_s, 2), "ray_init_s": round(init_s, 2),
              "ray_evolve_s": round(ray_s, 2), "first_task_s": round(marks[0], 2),
              "first_task_extra_s": round(marks[0] - per_unit, 2),
              "overhead_pct": round(100 * (ray_s / alone_s - 1), 1),
              "identical": identical, "torch": torch.__version__, "ray": ray.__version__,
              "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
