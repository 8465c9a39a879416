"""Which scoring configuration makes the Fig 2 sweep fastest on a CUDA machine, and how fast it is.

Run on a CUDA machine: ``python scripts/gpu_profile.py --out DIR``. Random weights (AlexNet +
DeePSiM fc6): compute is what matters. Steps, each printed as it finishes and appended as one JSON
line to ``DIR/gpu_profile.jsonl`` (so a run cut short still leaves its numbers):

1. raw scoring rate (generator → preprocessing → AlexNet → readout rows, the engine's own scorer)
   for each (precision, torch.compile, batch size) variant;
2. whether half precision keeps the ranking of a population (Spearman with fp32, top-20 of 40);
3. the Fig 2 sweep (11 units × 21 conditions × 20 restarts, popsize 40) for a few generations
   with the fastest variant, timed per generation; 100 generations are projected from the
   steady per-generation time plus the measured set-up and first generation;
4. ``bench`` (a), (b), (c) with the fastest variant, if the time budget allows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signseg_core.conditions import condition_grid  # noqa: E402
from signseg_core.generators.catalog import make_generator  # noqa: E402
from signseg_core.models.imagenet import DEFAULT_UNITS  # noqa: E402
from signseg_core.models.registry import load_model  # noqa: E402
from signseg_core.optimize.bench import configure_cuda, format_report, run_bench  # noqa: E402
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.visualize import make_scorer, visualize

VARIANTS = (  # (precision, compile, batch)
    ("bf16", False, 1024), ("fp16", False, 1024), ("fp16", False, 2048), ("bf16", False, 2048),
    ("bf16", True, 1024), ("fp16", True, 1024),
)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Log:
    def __init__(self, out: Path, t0: float):
        self.path, self.t0 = out / "gpu_profile.jsonl", t0
        out.mkdir(parents=True, exist_ok=True)

    def __call__(self, record: dict) -> None:
        record = {"t": round(time.perf_counter() - self.t0, 1), **record}
        print(json.dumps(record), flush=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def scorer(model, gen, precision, batch, compile):
    rows = model.readout.weight[:1].float()
    bias = model.readout.bias[:1].float()
    evo = torch.zeros(1, dtype=torch.long, device=model.device)
    return make_scorer(model, gen, rows, bias, evo, batch, batch_size=batch, precision=precision,
                       compile=compile)


def raw_rate(model, gen, precision, compile, batch, reps=10) -> dict:
    codes = torch.randn(batch, gen.dim, device=model.device,
                        generator=torch.Generator(model.device).manual_seed(0)) * gen.sigma0
    score = scorer(model, gen, precision, batch, compile)
    with torch.inference_mode():
        t0 = time.perf_counter()
        score(codes)
        _sync()
        warm = time.perf_counter() - t0
        score(codes)
        _sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            score(codes)
        _sync()
    rate = reps * batch / (time.perf_counter() - t0)
    return {"warmup_s": round(warm, 1), "img_per_s": round(rate)}


def ranking(model, gen) -> dict:
    from scipy.stats import spearmanr

    codes = torch.randn(40, gen.dim, device=model.device,
                        generator=torch.Generator(model.device).manual_seed(1)) * gen.sigma0
    with torch.inference_mode():
        ref = scorer(model, gen, "fp32", 40, False)(codes)
        out = {}
        for p in ("bf16", "fp16"):
            half = scorer(model, gen, p, 40, False)(codes)
            top = len(set(ref.topk(20).indices.tolist()) & set(half.topk(20).indices.tolist()))
            out[p] = {"spearman": round(float(spearmanr(ref.cpu(), half.cpu()).statistic), 4),
                      "top20_of_40_kept": top}
    return out


def sweep(model, gen, precision, compile, batch, generations) -> dict:
    conds = condition_grid(DEFAULT_UNITS)
    settings = VisualizeSettings(generator=gen.name, generations=generations, restarts=20,
                                 precision=precision)
    stamps = []

    def tick(done, total):
        _sync()
        stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    visualize(model, conds, settings=settings, generator=gen, store=False, batch_size=batch,
              progress=tick, compile=compile)
    _sync()
    total = time.perf_counter() - t0
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    per_gen = statistics.median(steps)
    first = stamps[0] - t0  # set-up + first generation (+ compilation)
    tail = total - (stamps[-1] - t0)  # final image pass
    projected = first + tail + per_gen * 99
    return {"evolutions": len(conds) * 20, "generations_run": generations,
            "seconds": round(total, 1), "first_generation_s": round(first, 1),
            "per_generation_s": round(per_gen, 3), "final_pass_s": round(tail, 1),
            "projected_100_generations_s": round(projected, 1),
            "images_per_s_steady": round(len(conds) * 20 * 40 / per_gen)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--sweep-generations", type=int, default=8)
    parser.add_argument("--budget-s", type=float, default=420, help="skip the bench after this")
    parser.add_argument("--only", default=None, metavar="PRECISION,COMPILE,BATCH",
                        help="measure this one variant, e.g. fp16,1,1024 (no ranking check)")
    parser.add_argument("--smoke", action="store_true",
                        help="CPU check of the script itself: tiny model, pixel generator")
    args = parser.parse_args()
    t0 = time.perf_counter()
    log = Log(args.out, t0)
    dev = torch.device("cpu" if args.smoke else "cuda")
    if dev.type == "cuda":
        configure_cuda()
        log({"device_name": torch.cuda.get_device_name(dev), "torch": torch.__version__,
             "cudnn": torch.backends.cudnn.version()})
    if args.smoke:
        global VARIANTS
        VARIANTS = (("fp32", False, 64), ("fp32", True, 64))
        model = load_model("tiny_test", device=dev)
        gen = make_generator("pixel", device=dev, size=32)
    else:
        model = load_model("alexnet", device=dev, untrained=True)
        gen = make_generator("deepsim", device=dev, untrained=True)
    model.module.to(memory_format=torch.channels_last)
    gen.to(memory_format=torch.channels_last)

    variants = VARIANTS
    if args.only:
        p, c, b = args.only.split(",")
        variants = ((p, bool(int(c)), int(b)),)
    rates = {}
    for precision, compile, batch in variants:
        try:
            r = raw_rate(model, gen, precision, compile, batch)
        except Exception as exc:  # a variant that fails must not cost the rest
            r = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        rates[(precision, compile, batch)] = r.get("img_per_s", 0)
        log({"raw": {"precision": precision, "compile": compile, "batch": batch, **r}})
    if not args.only:
        log({"ranking": ranking(model, gen)})

    precision, compile, batch = max(rates, key=rates.get)
    log({"best": {"precision": precision, "compile": compile, "batch": batch}})
    log({"sweep": {"precision": precision, "compile": compile, "batch": batch,
                   **sweep(model, gen, precision, compile, batch, args.sweep_generations)}})
    if time.perf_counter() - t0 < args.budget_s and not args.smoke:
        r = run_bench(device="cuda", precision=precision, batch_size=batch, compile=compile)
        print(format_report(r), flush=True)
        log({"bench": r})
    if dev.type == "cuda":
        log({"peak_gib": round(torch.cuda.max_memory_allocated(dev) / 2**30, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
