"""``python -m signseg_core bench``: how fast the batched engine scores images.

Measures, on one model and generator (random weights are fine: compute is identical):

(a) ``batched_img_per_s``: the engine (:func:`visualize` without a store): many evolutions in
    lockstep, one generator + backbone pass per chunk;
(b) ``naive_img_per_s``: one evolution at a time with pycma ask/tell, each population scored as
    one batch;
(c) ``raw_img_per_s``: generator + backbone forward alone at the engine's batch size.

``--sweep`` also times the paper's Fig 2 sweep (11 units × 21 conditions × 20 restarts × 100
generations); ``--sweep-generations N`` runs N generations and extrapolates.
"""

from __future__ import annotations

import json
import platform
import time

import torch

from signseg_core.conditions import condition_grid
from signseg_core.generators.catalog import make_generator
from signseg_core.models.imagenet import DEFAULT_UNITS
from signseg_core.models.registry import load_model
from signseg_core.models.zoo import resolve_device
from signseg_core.optimize.evolve_pycma import run_pycma
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.visualize import default_batch_size, make_scorer, visualize


def configure_cuda() -> None:
    """Fast defaults for CUDA: cuDNN autotuning, TF32 matmuls. Called at the program's edge."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setup(model_name: str, generator_name: str, device: torch.device, untrained: bool):
    model = load_model(model_name, device=device, untrained=untrained)
    generator = make_generator(generator_name, device=device, untrained=generator_name in
                               ("deepsim", "biggan"))
    if device.type == "cuda":
        model.module.to(memory_format=torch.channels_last)
        generator.to(memory_format=torch.channels_last)
    return model, generator


def time_raw(model, generator, *, batch_size: int, batches: int, precision: str,
             compile: bool = False) -> float:
    """(c): images/s of generator + backbone forward on random codes."""
    device = model.device
    rows = model.readout.weight[:1].float()
    bias = torch.zeros(1, device=device)
    evo = torch.zeros(1, dtype=torch.long, device=device)
    score = make_scorer(model, generator, rows, bias, evo, batch_size, batch_size=batch_size,
                        precision=precision, compile=compile)
    g = torch.Generator(device="cpu").manual_seed(0)
    codes = (torch.randn(batch_size, generator.dim, generator=g) * generator.sigma0).to(device)
    with torch.inference_mode():
        for _ in range(2):  # warm-up: cuDNN autotuning, allocator, compilation (its 2nd call too)
            score(codes)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(batches):
            score(codes)
        _sync(device)
    return batches * batch_size / (time.perf_counter() - t0)


def time_batched(model, generator, *, evolutions: int, generations: int, batch_size: int,
                 precision: str, units=DEFAULT_UNITS, compile: bool = False) -> tuple[float, int]:
    """(a): images/s of the engine over ``evolutions`` lockstep evolutions. Returns (rate, n)."""
    full = condition_grid(units)  # 21 conditions per unit, as in the paper
    conds = full if evolutions >= len(full) else condition_grid(units[:1], alphas=(0.0, 0.5, 1.0))
    restarts = max(1, -(-evolutions // len(conds)))
    settings = VisualizeSettings(generator=generator.name, generations=generations,
                                 restarts=restarts, precision=precision)
    popsize = settings.cma_config(generator.sigma0).strategy_parameters(generator.dim)["popsize"]
    # warm-up with one generation
    visualize(model, conds, settings=VisualizeSettings(
        generator=generator.name, generations=1, restarts=restarts, precision=precision),
        generator=generator, store=False, batch_size=batch_size, compile=compile)
    _sync(model.device)
    t0 = time.perf_counter()
    visualize(model, conds, settings=settings, generator=generator, store=False,
              batch_size=batch_size, compile=compile)
    _sync(model.device)
    n = len(conds) * restarts * popsize * generations
    return n / (time.perf_counter() - t0), n


def time_naive(model, generator, *, evolutions: int, generations: int, precision: str) -> float:
    """(b): images/s of one pycma evolution at a time, each population scored as one batch."""
    device = model.device
    unit = DEFAULT_UNITS[0]
    rows = model.readout.weight[unit:unit + 1].float()
    bias = model.readout.bias[unit:unit + 1].float()
    config = VisualizeSettings(generator=generator.name).cma_config(generator.sigma0)
    popsize = config.strategy_parameters(generator.dim)["popsize"]
    evo = torch.zeros(1, dtype=torch.long, device=device)
    score = make_scorer(model, generator, rows, bias, evo, popsize, batch_size=popsize,
                        precision=precision)
    n = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(evolutions):
            x0 = generator.initial_code(1, seed=i)[0]
            run_pycma(lambda c: score(c.to(device, torch.float32)), x0, config=config, seed=i,
                      generations=generations)
            n += popsize * generations
    _sync(device)
    return n / (time.perf_counter() - t0)


def time_sweep(model, generator, *, generations: int, restarts: int = 20, batch_size: int,
               precision: str, full_generations: int = 100, compile: bool = False) -> dict:
    """The paper's Fig 2 sweep on one network: 11 units × 21 conditions × ``restarts``."""
    conds = condition_grid(DEFAULT_UNITS)
    settings = VisualizeSettings(generator=generator.name, generations=generations,
                                 restarts=restarts, precision=precision)
    t0 = time.perf_counter()
    visualize(model, conds, settings=settings, generator=generator, store=False,
              batch_size=batch_size, compile=compile)
    _sync(model.device)
    seconds = time.perf_counter() - t0
    return {"sweep_conditions": len(conds), "sweep_evolutions": len(conds) * restarts,
            "sweep_generations_run": generations, "sweep_seconds": seconds,
            "sweep_projected_seconds": seconds * full_generations / generations}


def run_bench(*, device="cpu", model_name=None, generator_name=None, evolutions=None,
              generations=None, naive_evolutions=None, batch_size=None, precision=None,
              untrained=None, sweep=False, sweep_generations=100, sweep_restarts=20,
              compile=None) -> dict:
    device = resolve_device(device)
    cuda = device.type == "cuda"
    if cuda:
        configure_cuda()
    model_name = model_name or ("alexnet" if cuda else "efficientnet_lite0")
    generator_name = generator_name or ("deepsim" if cuda else "fourier")
    untrained = (model_name != "efficientnet_lite0") if untrained is None else untrained
    precision = precision or ("fp16" if cuda else "fp32")
    compile = cuda if compile is None else compile  # the fastest measured configuration
    batch_size = batch_size or (1024 if cuda else default_batch_size(device))
    evolutions = evolutions or (924 if cuda else 10)
    generations = generations or (3 if cuda else 2)
    naive_evolutions = naive_evolutions or (3 if cuda else 2)

    model, generator = _setup(model_name, generator_name, device, untrained)
    out = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if cuda
           else platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "model": model_name, "weights": "random" if untrained else "trained",
           "generator": generator_name, "generator_dim": generator.dim, "precision": precision,
           "batch_size": batch_size, "compile": bool(compile), "torch": torch.__version__}
    out["raw_img_per_s"] = time_raw(model, generator, batch_size=batch_size,
                                    batches=3 if not cuda else 20, precision=precision,
                                    compile=compile)
    out["batched_img_per_s"], out["batched_images"] = time_batched(
        model, generator, evolutions=evolutions, generations=generations,
        batch_size=batch_size, precision=precision, compile=compile)
    out["naive_img_per_s"] = time_naive(model, generator, evolutions=naive_evolutions,
                                        generations=generations, precision=precision)
    out["batched_over_raw"] = out["batched_img_per_s"] / out["raw_img_per_s"]
    out["batched_over_naive"] = out["batched_img_per_s"] / out["naive_img_per_s"]
    if sweep:
        out.update(time_sweep(model, generator, generations=sweep_generations,
                              restarts=sweep_restarts, batch_size=batch_size,
                              precision=precision, compile=compile))
    return out


def format_report(r: dict) -> str:
    lines = [
        f"device {r['device']} ({r['device_name']}), torch {r['torch']}, threads {r['threads']}",
        f"model {r['model']} ({r['weights']} weights), generator {r['generator']} "
        f"(d={r['generator_dim']}), {r['precision']}, batch {r['batch_size']}"
        + (", torch.compile" if r.get("compile") else ""),
        f"(a) batched engine : {r['batched_img_per_s']:10.1f} img/s",
        f"(b) naive pycma    : {r['naive_img_per_s']:10.1f} img/s",
        f"(c) raw forward    : {r['raw_img_per_s']:10.1f} img/s",
        f"(a)/(c) = {r['batched_over_raw']:.3f}   (a)/(b) = {r['batched_over_naive']:.2f}",
    ]
    if "sweep_seconds" in r:
        lines.append(f"Fig 2 sweep: {r['sweep_evolutions']} evolutions, "
                     f"{r['sweep_generations_run']} generations in {r['sweep_seconds']:.1f} s; "
                     f"100 generations ≈ {r['sweep_projected_seconds']:.0f} s")
    return "\n".join(lines)


def main_bench(args) -> int:
    result = run_bench(device=args.device, model_name=args.model, generator_name=args.generator,
                       evolutions=args.evolutions, generations=args.generations,
                       batch_size=args.batch_size, precision=args.precision,
                       sweep=args.sweep, sweep_generations=args.sweep_generations,
                       sweep_restarts=args.sweep_restarts, compile=args.compile)
    print(format_report(result))
    if args.json:
        print(json.dumps(result))
    return 0
