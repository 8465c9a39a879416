"""Run the visualization part of a sweep on a fast machine and write a bundle to bring home.

    python scripts/remote_sweep.py --device cuda --out bundle.npz [--generations 60 --restarts 5]

Units are run one at a time (21 conditions × restarts evolutions each) until ``--budget-s``
is spent, so a time-limited machine returns whole units. At home:
``python -m signseg_core import-bundle bundle.npz`` (same model and generator) fills the store,
and ``python -m signseg_core sweep`` then reads those conditions instead of computing them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signseg_core.conditions import DEFAULT_ALPHAS, condition_grid  # noqa: E402
from signseg_core.generators.catalog import make_generator  # noqa: E402
from signseg_core.models.imagenet import DEFAULT_UNITS  # noqa: E402
from signseg_core.models.registry import load_model  # noqa: E402
from signseg_core.models.zoo import resolve_device  # noqa: E402
from signseg_core.optimize.bench import configure_cuda  # noqa: E402
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.visualize import visualize
from signseg_core.sweeps.bundle import export_bundle  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--generator", default="fourier")
    p.add_argument("--units", type=int, nargs="+", default=list(DEFAULT_UNITS))
    p.add_argument("--alphas", type=float, nargs="+", default=list(DEFAULT_ALPHAS))
    p.add_argument("--generations", type=int, default=60)
    p.add_argument("--restarts", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--budget-s", type=float, default=240.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    device = resolve_device(args.device)
    if device.type == "cuda":
        configure_cuda()
    model = load_model(args.model, device=device)
    generator = make_generator(args.generator, device=device)
    settings = VisualizeSettings(generator=args.generator, generations=args.generations,
                                 restarts=args.restarts, seed=args.seed)
    t0 = time.perf_counter()
    results, done = [], []
    for unit in args.units:
        if time.perf_counter() - t0 > args.budget_s:
            break
        t1 = time.perf_counter()
        results += visualize(model, condition_grid([unit], alphas=args.alphas), settings=settings,
                             generator=generator, store=False, batch_size=args.batch_size)
        done.append(unit)
        print(f"unit {unit}: {time.perf_counter() - t1:.1f} s", flush=True)
    export_bundle(results, args.out)
    info = {"device": str(device), "model": args.model, "generator": args.generator,
            "units_done": done, "conditions": len(results), "generations": args.generations,
            "restarts": args.restarts, "seconds": time.perf_counter() - t0}
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
