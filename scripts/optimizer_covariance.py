"""Does adapting a covariance help a 100-generation evolution in a 4096-d code space?

The engine's default (``covariance="none"``) is an isotropic (mu/mu_w, lambda)-ES with cumulative
step-size adaptation; ``"diagonal"`` is sep-CMA-ES and ``"full"`` CMA-ES proper
(:mod:`signseg_core.optimize.evolve`). This runs the three on the same units of one network, with
the same seeds (evolution ``(unit, restart)`` starts from the same code and draws the same
integers in every mode: common random numbers, so mode differences are paired), and reports the
final activation after ``--generations`` generations.

Setup of the committed numbers (docs/optimizer.md, a 2-core CPU, one thread, about 25 minutes)::

    nice -n 10 python scripts/optimizer_covariance.py --out docs/data/optimizer_covariance

The generator is DeePSiM fc6 (d = 4096) with seeded random weights (the published ones are not on
that machine); the scorer EfficientNet-Lite0 (ImageNet weights) at ``--image-size`` px; ``full``
refreshes its eigendecomposition every ``--eigen-interval`` generations (Hansen's tutorial B.2
allows up to :func:`~signseg_core.optimize.evolve.lazy_eigen_interval`, 103 at lambda = 8; the
engine's own default of every generation costs ~4 s per evolution per generation on that CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere

from signseg_core.generators.catalog import make_generator  # noqa: E402
from signseg_core.metrics.stats import mean_ci, paired_difference  # noqa: E402
from signseg_core.models.imagenet import DEFAULT_UNITS  # noqa: E402
from signseg_core.models.registry import load_model  # noqa: E402
from signseg_core.optimize.ask_tell import drive_evolution  # noqa: E402
from signseg_core.optimize.evolve import (  # noqa: E402
    BatchedCMAES,
    CMAConfig,
    lazy_eigen_interval,
)
from signseg_core.optimize.settings import describe_optimizer  # noqa: E402
from signseg_core.optimize.visualize import make_scorer  # noqa: E402

MODES = ("none", "diagonal", "full")
CHECKPOINTS = (10, 25, 50, 100)


def build(model_name: str, *, image_size: int | None, generator: str = "deepsim",
          generator_seed: int = 0, **generator_options):
    """The scorer (a zoo model, optionally at a smaller input size) and a random-weight GAN
    (``untrained=True``; weight-free generators take ``generator_options`` instead)."""
    model = load_model(model_name)
    if image_size is not None:
        model = dataclasses.replace(model, input_size=int(image_size))
    gan = generator in ("deepsim", "biggan")
    gen = make_generator(generator, untrained=gan, seed=generator_seed, **generator_options)
    return model, gen


def restart_seed(unit: int, restart: int) -> int:
    """The seed of one (unit, restart), the same in every mode."""
    return (1_000_003 * int(unit) + 7919 * int(restart) + 12345) & 0x7FFFFFFF


def shape_spread(es) -> tuple:
    """Per evolution, the smallest and largest eigenvalue of its covariance C (B,) each: how far
    the search distribution has left the sphere (1 and 1 for ``"none"``)."""
    state = es.state_dict()
    if "cov" in state:
        values = torch.linalg.eigvalsh(state["cov"].double())
    else:
        values = state["cdiag"].double()
    return values.amin(1), values.amax(1)


def evolve_chunk(model, generator, units: Sequence[int], restarts: Sequence[int], config,
                 *, generations: int, eigen_interval: int, batch_size: int) -> list[dict]:
    """One batch of evolutions (``units[i]``, ``restarts[i]``): a row of results each."""
    weight, bias = model.readout.weight.float(), model.readout.bias
    unit_t = torch.tensor(list(units))
    rows = weight[unit_t]
    biases = bias.float()[unit_t] if bias is not None else torch.zeros(len(units))
    seeds = [restart_seed(u, r) for u, r in zip(units, restarts)]
    x0 = torch.cat([generator.initial_code(1, seed=s) for s in seeds])
    popsize = config.strategy_parameters(generator.dim)["popsize"]
    evo = torch.arange(len(units))
    score = make_scorer(model, generator, rows, biases, evo, popsize, batch_size=batch_size,
                        precision="fp32")
    t0 = time.perf_counter()
    with torch.inference_mode():
        es = BatchedCMAES(x0, config=config, seeds=seeds, eigen_interval=eigen_interval)
        res = drive_evolution(es, score, generations, None, None)
        c_min, c_max = shape_spread(es)
        at_mean = make_scorer(model, generator, rows, biases, evo, 1, batch_size=batch_size,
                              precision="fp32")(res.final_mean)
    seconds = (time.perf_counter() - t0) / len(units)
    out = []
    for i, (unit, restart) in enumerate(zip(units, restarts)):
        out.append({
            "mode": config.covariance, "unit": int(unit), "restart": int(restart),
            "seed": seeds[i], "best": float(res.best_score[i]),
            "best_at": {str(g): float(res.best_so_far[g - 1, i]) for g in CHECKPOINTS
                        if g <= res.generations_run},
            "last_gen_mean": float(res.mean_per_gen[-1, i]),
            "final_mean_score": float(at_mean[i]), "final_sigma": float(res.final_sigma[i]),
            "cov_eig_min": float(c_min[i]), "cov_eig_max": float(c_max[i]),
            "seconds_per_evolution": seconds,
        })
    return out


def measure(model, generator, *, units: Sequence[int], restarts: int, modes=MODES,
            generations: int = 100, popsize: int = 8, sigma0: float | None = None,
            step_size_rule: str = "wang_ponce", eigen_interval: int = 20, chunk: int = 5,
            batch_size: int = 40, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Raw rows (one per mode x unit x restart) of :func:`evolve_chunk`, ``chunk`` evolutions
    at a time (bounds the memory of ``full``: ~5 copies of a (chunk, d, d) float32 covariance)."""
    pairs = [(u, r) for r in range(restarts) for u in units]
    rows = []
    for mode in modes:
        config = CMAConfig(popsize=popsize, sigma0=sigma0 or generator.sigma0, covariance=mode,
                           step_size_rule=step_size_rule, maximize=True)
        for start in range(0, len(pairs), chunk):
            part = pairs[start:start + chunk]
            rows += evolve_chunk(model, generator, [u for u, _ in part], [r for _, r in part],
                                 config, generations=generations, batch_size=batch_size,
                                 eigen_interval=eigen_interval if mode == "full" else 1)
            if progress is not None:
                progress(f"{mode}: {start + len(part)}/{len(pairs)} evolutions, "
                         f"{rows[-1]['seconds_per_evolution']:.1f} s each")
    return rows


def unit_means(rows: Sequence[dict], mode: str, units: Sequence[int], field: str) -> np.ndarray:
    """Per unit, the mean of ``field`` over its restarts in ``mode`` (NaN where none ran)."""
    out = []
    for unit in units:
        vals = [r[field] for r in rows if r["mode"] == mode and r["unit"] == unit]
        out.append(float(np.mean(vals)) if vals else float("nan"))
    return np.asarray(out)


def summarise(rows: Sequence[dict], *, field: str = "best") -> dict:
    """Per mode, the mean over units (each the mean of its restarts) with a 95% t-interval;
    per pair of modes, the paired difference over units with its interval."""
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    units = sorted({r["unit"] for r in rows})
    means = {m: unit_means(rows, m, units, field) for m in modes}
    summary = {"field": field, "n_units": len(units), "units": units,
               "restarts": max((r["restart"] for r in rows), default=-1) + 1,
               "modes": {m: dict(zip(("mean", "low", "high"), mean_ci(v)))
                         for m, v in means.items()}, "differences": {}}
    for i, a in enumerate(modes):
        for b in modes[:i]:
            diff = paired_difference(means[a], means[b])
            summary["differences"][f"{a} - {b}"] = dict(zip(("mean", "low", "high"), diff))
    return summary


def format_summary(summary: dict) -> str:
    """The summary as the lines the script prints (and docs/optimizer.md quotes)."""
    lines = [f"{summary['field']}: mean over {summary['n_units']} units "
             f"({summary['restarts']} restarts each), 95% t-interval over units"]
    for mode, s in summary["modes"].items():
        lines.append(f"  {mode:9s} {s['mean']:8.3f}  [{s['low']:.3f}, {s['high']:.3f}]")
    for pair, s in summary["differences"].items():
        lines.append(f"  {pair:18s} {s['mean']:+8.3f}  [{s['low']:+.3f}, {s['high']:+.3f}]")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=96, help="scorer input side (px)")
    p.add_argument("--generator", default="deepsim")
    p.add_argument("--units", type=int, nargs="+", default=list(DEFAULT_UNITS[:5]))
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--generations", type=int, default=100)
    p.add_argument("--popsize", type=int, default=8)
    p.add_argument("--eigen-interval", type=int, default=20)
    p.add_argument("--chunk", type=int, default=5, help="evolutions batched together")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="docs/data/optimizer_covariance",
                   help="writes OUT.jsonl (raw rows) and OUT.json (setup and summary)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, generator = build(args.model, image_size=args.image_size, generator=args.generator)
    config = CMAConfig(popsize=args.popsize, sigma0=generator.sigma0, covariance="full",
                       step_size_rule="wang_ponce")
    setup = {**{k: v for k, v in vars(args).items() if k not in ("out", "threads")},
             "dim": generator.dim, "sigma0": generator.sigma0,
             "generator_weights": "seeded random (make_generator(untrained=True, seed=0))",
             "tutorial_eigen_interval": lazy_eigen_interval(config, generator.dim),
             "optimizers": {m: describe_optimizer(dataclasses.replace(config, covariance=m),
                                                  generator.dim) for m in args.modes},
             "machine": "2-core CPU, no GPU, torch.set_num_threads(%d)" % args.threads}
    t0 = time.perf_counter()
    rows = measure(model, generator, units=args.units, restarts=args.restarts, modes=args.modes,
                   generations=args.generations, popsize=args.popsize,
                   eigen_interval=args.eigen_interval, chunk=args.chunk,
                   progress=lambda m: print(m, file=sys.stderr, flush=True))
    setup["wall_seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summaries = {f: summarise(rows, field=f) for f in ("best", "final_mean_score")}
    out.with_suffix(".json").write_text(json.dumps({"setup": setup, "summary": summaries},
                                                   indent=1) + "\n")
    for s in summaries.values():
        print(format_summary(s))
    print(f"{len(rows)} evolutions in {setup['wall_seconds']:.0f} s; wrote {out}.jsonl, .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
