"""The explorer's CPU preview budget, chosen by measurement, and how fast any unit goes live.

``quality``: for candidate budgets of about 400 images per condition (restarts × population ×
generations), evolve the control condition of the paper's 11 default units on EfficientNet-Lite0
with the ``fourier`` generator, and compare the images with the full budget's (the shipped
precomputed results, 5 restarts × 60 generations × population 35 = 10,500 images per condition):

* Lite0 target logit of the best restart (what the optimiser maximises);
* held-out recognisability: rank of the target class for the best image under Lite1 and Lite2
  (not optimised), as in ``docs/generator_quality.md``;
* closeness to the full budget's images: the paper's similarity (mean cosine of penultimate
  features, Lite1 + Lite2) between each candidate image and the same unit's full-budget images,
  beside two references: full-budget images among themselves (the ceiling: restarts of the same
  budget) and candidate images against *other* units' full-budget images (the floor).

``timing``: one uncached unit with the chosen preview, as the explorer runs it (the condition on
screen first, then its strip neighbours, one at a time): seconds to the first preview image, to
the selected condition stored, to the whole 21-condition strip, and how long a stop takes to end
the run. Figures are printed and written as JSON; run it on an otherwise idle machine.

    python scripts/live_budget.py quality --out docs/data/live_budget_quality.json
    python scripts/live_budget.py timing --out docs/data/live_budget_timing.json
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere

from signseg_core.conditions import Condition  # noqa: E402
from signseg_core.generators.catalog import make_generator  # noqa: E402
from signseg_core.metrics.similarity import ensemble_similarity  # noqa: E402
from signseg_core.metrics.stats import mean_ci  # noqa: E402
from signseg_core.models.imagenet import DEFAULT_UNITS  # noqa: E402
from signseg_core.models.registry import load_model  # noqa: E402
from signseg_core.optimize.live import run_live  # noqa: E402
from signseg_core.optimize.request import VisualizeRequest  # noqa: E402
from signseg_core.optimize.settings import VisualizeSettings  # noqa: E402
from signseg_core.optimize.visualize import visualize  # noqa: E402
from signseg_core.store import ResultStore  # noqa: E402
from signseg_core.sweeps.bundle import import_bundle  # noqa: E402
from signseg_core.sweeps.preview import FOURIER_PREVIEW as CPU_PREVIEW  # noqa: E402 - the
# fourier preview this script chose and docs/benchmarks.md reports (the preview is now maco)
from signseg_core.sweeps.preview import PRECOMPUTED  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Candidates of about 400 images per condition: (restarts, popsize, generations).
CANDIDATES = {"r2_p10_g20": (2, 10, 20), "r1_p10_g40": (1, 10, 40), "r3_p12_g12": (3, 12, 12),
              "r1_p8_g50": (1, 8, 50), "r1_p12_g40": (1, 12, 40), "r2_p8_g30": (2, 8, 30),
              "r1_p8_g44": (1, 8, 44), "r1_p7_g50": (1, 7, 50)}


def full_budget_controls(model, units) -> dict[int, object]:
    """The shipped full-budget control results per unit (images regenerated from the bundles'
    codes, scores as the bundles carry them)."""
    generator = make_generator("fourier")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp) / "results")
        for path in sorted((ROOT / "docs" / "data").glob("lite0_fourier_g60_r5_*.npz")):
            for r in import_bundle(path, model, generator, store=store):
                if r.key.sign == "control" and r.key.unit in units:
                    out[r.key.unit] = r
    return out


def target_rank(logits: torch.Tensor, unit: int) -> int:
    """1-based rank of ``unit`` among the logits of one image."""
    return int((logits > logits[unit]).sum()) + 1


def judge_candidate(results, full: dict, judges: dict) -> dict:
    """Per unit: Lite0 logit of the best restart, held-out ranks, similarity to full/other."""
    rows = []
    ensemble = list(judges.values())
    for r in results:
        unit, best = r.key.unit, r.best_index
        image = torch.from_numpy(r.images[best:best + 1]).permute(0, 3, 1, 2).float() / 255
        row = {"unit": unit, "lite0_logit": float(r.intact_scores[best])}
        with torch.inference_mode():
            for name, m in judges.items():
                row[f"{name}_rank"] = target_rank(m(image)[0], unit)
        row["sim_to_full"] = ensemble_similarity(full[unit], r.images, ensemble).similarity
        others = np.concatenate([full[u] for u in full if u != unit])
        row["sim_to_other_units"] = ensemble_similarity(others, r.images, ensemble).similarity
        rows.append(row)
    return {"per_unit": rows, **summarize(rows)}


def summarize(rows) -> dict:
    out = {}
    for col in rows[0]:
        if col == "unit":
            continue
        values = np.array([row[col] for row in rows], dtype=float)
        mean, low, high = mean_ci(values)
        out[col] = {"mean": float(mean), "ci95": [float(low), float(high)],
                    "median": float(np.median(values))}
    for name in ("lite1", "lite2"):
        ranks = np.array([row[f"{name}_rank"] for row in rows])
        out[f"{name}_top5_share"] = float(np.mean(ranks <= 5))
    return out


def cmd_quality(args) -> dict:
    torch.set_num_threads(args.threads)
    model = load_model("efficientnet_lite0")
    judges = {"lite1": load_model("efficientnet_lite1"), "lite2": load_model("efficientnet_lite2")}
    units = tuple(args.units)
    full_results = full_budget_controls(model, units)
    full = {u: r.images for u, r in full_results.items()}
    report = {"units": list(units), "threads": args.threads, "candidates": {}}
    ceiling = [ensemble_similarity(full[u], full[u], list(judges.values()),
                                   exclude_diagonal=True).similarity for u in units]
    mean, low, high = mean_ci(np.array(ceiling))
    report["full_vs_full"] = {"mean": float(mean), "ci95": [float(low), float(high)]}
    full_settings = PRECOMPUTED["efficientnet_lite0"]
    print(f"full budget among itself: similarity {mean:.3f} [{low:.3f}, {high:.3f}]")
    judged_full = judge_candidate([full_results[u] for u in units], full, judges)
    judged_full["per_unit"] = [{k: v for k, v in row.items() if k != "sim_to_full"}
                               for row in judged_full["per_unit"]]  # itself, diagonal included
    report["full_budget_judged"] = {k: v for k, v in judged_full.items() if k != "sim_to_full"}
    print(f"full budget: Lite0 logit {judged_full['lite0_logit']['mean']:.2f}, Lite1/Lite2 "
          f"median rank {judged_full['lite1_rank']['median']:.0f}/"
          f"{judged_full['lite2_rank']['median']:.0f}")
    for tag in args.candidates:
        restarts, popsize, generations = CANDIDATES[tag]
        settings = VisualizeSettings(generator="fourier", restarts=restarts, popsize=popsize,
                                     generations=generations, seed=0)
        start = time.perf_counter()
        results = visualize(model, [Condition(u, "positive", 0.0) for u in units],
                            settings=settings, store=False)
        wall = time.perf_counter() - start
        judged = judge_candidate(results, full, judges)
        judged.update(restarts=restarts, popsize=popsize, generations=generations,
                      images_per_condition=restarts * popsize * generations,
                      wall_s_11_units=round(wall, 1))
        report["candidates"][tag] = judged
        print(f"{tag}: Lite0 logit {judged['lite0_logit']['mean']:.2f}, sim to full "
              f"{judged['sim_to_full']['mean']:.3f} (other units "
              f"{judged['sim_to_other_units']['mean']:.3f}), Lite1/Lite2 median rank "
              f"{judged['lite1_rank']['median']:.0f}/{judged['lite2_rank']['median']:.0f}, "
              f"{wall:.0f} s")
    popsize = full_settings.cma_config(1.0).strategy_parameters(make_generator("fourier").dim)
    report["full_budget"] = {"restarts": full_settings.restarts, "popsize": popsize["popsize"],
                             "generations": full_settings.generations}
    return report


def cmd_timing(args) -> dict:
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model("efficientnet_lite0")
    generator = make_generator(CPU_PREVIEW.generator, **dict(CPU_PREVIEW.generator_options))
    loaded = time.perf_counter() - t0
    request = VisualizeRequest.for_unit(model, generator, args.unit, CPU_PREVIEW)
    first = Condition(args.unit, "positive", 0.5)
    marks: dict[str, float] = {}
    start = time.perf_counter()

    def progress(done, total, message, preview=None):
        now = time.perf_counter() - start
        if preview is not None:
            marks.setdefault("first_preview_s", now)
        if "conditions stored" in message:
            marks.setdefault("selected_condition_s", now)

    run = run_live(request, first=first, store=False, progress=progress)
    marks["strip_s"] = time.perf_counter() - start
    assert not run.cancelled and len(run.results) == 21
    stops = []
    for delay in (3.0, 7.0, 11.0):  # a stop at various points of a condition
        flag = threading.Event()
        timer = threading.Timer(delay, flag.set)
        timer.start()
        begin = time.perf_counter()
        run_live(request, first=first, store=False, should_stop=flag.is_set)
        stops.append(time.perf_counter() - begin - delay)
    report = {"unit": args.unit, "threads": args.threads, "model_load_s": round(loaded, 2),
              "settings": {"restarts": CPU_PREVIEW.restarts, "popsize": request.popsize,
                           "generations": CPU_PREVIEW.generations},
              "images_per_condition": request.images_per_condition,
              # conditions evolved together after the first, as the explorer runs them
              "group": inspect.signature(run_live).parameters["group"].default,
              **{k: round(v, 2) for k, v in marks.items()},
              "images_per_s": round(21 * request.images_per_condition / marks["strip_s"], 1),
              "stop_latency_s": [round(s, 2) for s in stops]}
    print(json.dumps(report, indent=1))
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--units", type=int, nargs="+", default=list(DEFAULT_UNITS))
    q.add_argument("--candidates", nargs="*", default=list(CANDIDATES), choices=list(CANDIDATES))
    t = sub.add_parser("timing")
    t.add_argument("--unit", type=int, default=1)  # goldfish: not precomputed
    for p in (q, t):
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = cmd_quality(args) if args.what == "quality" else cmd_timing(args)
    report["torch"] = torch.__version__
    report["date"] = time.strftime("%Y-%m-%d")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
