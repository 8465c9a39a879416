"""maco (gradient ascent on the phases of a fixed natural spectrum) against fourier CMA-ES, at
equal wall-clock on this CPU, judged by networks that were not optimised.

For each of the 11 default units (control condition, alpha = 0) of the optimised model
(EfficientNet-Lite0), each method runs in the same process, one after the other, unit by unit
(the order rotates from unit to unit, so a change in the machine's load falls on every method),
for the same number of seconds: a method stops at the first iteration boundary (a CMA-ES
generation or a gradient step) where the next iteration, at its median duration so far, would
end more than half an iteration past the budget. The wall time each really used is recorded.

Methods: ``maco`` (:mod:`signseg_core.generators.maco`, Adam on the phases, one transformed image
per restart per step), ``fourier`` (the isotropic ES on the Fourier generator with the default
population, 35: the setting of the stored results) and ``fourier_p8`` (the same with population
8: the old CPU preview's setting, :data:`signseg_core.sweeps.preview.FOURIER_PREVIEW`). Every restart's
final image counts (8-bit, as saved) and is judged by: the target's rank under Lite1 and Lite2
(held out: top-1 / top-5 counts), the target logit under Lite0, and the highest box score of the
best COCO detector present (:func:`signseg_core.metrics.objectness.objectness_detector`, whose
name is recorded). The start images of each method are judged too, as a floor.

    python scripts/maco_vs_fourier.py --budget 60 --restarts 2        # ~35 min on 2 idle cores
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats as st

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # run as a file from anywhere

from generator_quality import batched_logits, contact_sheet, target_ranks  # noqa: E402

from signseg_core.conditions import Condition  # noqa: E402
from signseg_core.generators.catalog import make_generator  # noqa: E402
from signseg_core.metrics import objectness as obj  # noqa: E402
from signseg_core.metrics.stats import mean_ci, paired_difference  # noqa: E402
from signseg_core import paths  # noqa: E402
from signseg_core.models.imagenet import DEFAULT_UNITS  # noqa: E402
from signseg_core.models.registry import load_model  # noqa: E402
from signseg_core.optimize.settings import (  # noqa: E402
    VisualizeSettings,
    condition_key,
    evolution_seed,
)
from signseg_core.optimize.visualize import evolve_conditions  # noqa: E402

METHODS = {"maco": ("maco", None), "fourier": ("fourier", None), "fourier_p8": ("fourier", 8)}
CAP = 5000  # iterations: never reached, the deadline stops every run


class Deadline:
    """``should_stop`` and ``observe`` for one run: stop at an iteration boundary (the first
    ``should_stop`` after an ``observe``) once elapsed + half the median iteration >= budget."""

    def __init__(self, budget_s: float):
        self.budget, self.start = budget_s, time.perf_counter()
        self.last, self.durations, self.boundary = self.start, [], True

    def observe(self, done, state, images_of) -> None:
        now = time.perf_counter()
        self.durations.append(now - self.last)
        self.last, self.boundary = now, True

    def should_stop(self) -> bool:
        if not self.boundary:
            return False
        self.boundary = False
        typical = statistics.median(self.durations) if self.durations else 0.0
        return time.perf_counter() - self.start + typical / 2 >= self.budget


def run_method(model, generator, method: str, unit: int, *, budget: float, restarts: int,
               seed: int = 0) -> dict:
    """One method on one unit's control for ``budget`` seconds: its images and bookkeeping."""
    name, popsize = METHODS[method]
    settings = VisualizeSettings(generator=name, generations=CAP, restarts=restarts, seed=seed,
                                 popsize=popsize)
    cond = Condition(unit, "positive", 0.0)
    key = condition_key(model, generator, cond, settings)
    scored = []
    deadline = Deadline(budget)
    result = evolve_conditions(model, generator, [(cond, key)], settings, "fp32", 64, None,
                               deadline.should_stop, on_batch=scored.append,
                               observe=deadline.observe)[0]
    wall = time.perf_counter() - deadline.start
    with torch.no_grad():
        starts = torch.cat([generator.initial_code(1, seed=evolution_seed(key, r))
                            for r in range(restarts)])
        start_images = (generator(starts).clamp(0, 1) * 255).round().byte()
    return {"images": result.images, "start_images": start_images.permute(0, 2, 3, 1).numpy(),
            "wall_s": wall, "iterations": int(result.max_per_gen.shape[0]),
            "images_scored": int(sum(scored)),
            "lite0_logit_float": result.intact_scores.tolist()}


def judge(images: np.ndarray, units: list[int], judges: dict, detector) -> dict:
    """Per image: target logit and 0-based rank under each judge, and the detector's score."""
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    out = {}
    for name, model in judges.items():
        logits = batched_logits(model, batch)
        out[f"{name}_logit"] = logits.gather(1, torch.tensor(units)[:, None])[:, 0].tolist()
        out[f"{name}_rank"] = target_ranks(logits, units).tolist()
    scores, _ = obj.objectness(images, detector)
    out["objectness"] = scores.tolist()
    return out


def count_ci(hits: int, n: int) -> list[float]:
    """Exact (Clopper-Pearson) 95 % interval of a share ``hits / n``."""
    ci = st.binomtest(hits, n).proportion_ci(0.95, method="exact")
    return [round(ci.low, 3), round(ci.high, 3)]


def summarize(rows: list[dict], heldout: list[str], optimised: str) -> dict:
    """Counts over every image and means over units (with t CIs) for one method's rows."""
    n = sum(len(r[f"{optimised}_rank"]) for r in rows)
    out = {"n_images": n, "n_units": len(rows)}
    for name in heldout + [optimised]:
        ranks = np.concatenate([r[f"{name}_rank"] for r in rows])
        for k in (1, 5):
            hits = int((ranks < k).sum())
            out[f"{name}_top{k}"] = hits
            out[f"{name}_top{k}_ci"] = count_ci(hits, n)
    unit_logit = [np.mean(r[f"{optimised}_logit"]) for r in rows]
    unit_obj = [np.mean(r["objectness"]) for r in rows]
    out["lite0_logit_mean_ci"] = [round(float(v), 3) for v in mean_ci(unit_logit)]
    out["objectness_mean_ci"] = [round(float(v), 4) for v in mean_ci(unit_obj)]
    for field in ("wall_s", "iterations", "images_scored"):
        if field in rows[0]:
            out[f"{field}_per_unit_mean"] = round(float(np.mean([r[field] for r in rows])), 1)
    return out


def compare(a: list[dict], b: list[dict], heldout: list[str], optimised: str) -> dict:
    """Per-unit paired differences a - b (mean and 95 % t CI over units)."""
    def per_unit(rows, f):
        return np.array([f(r) for r in rows], dtype=float)

    hits = lambda r: sum(int((np.array(r[f"{h}_rank"]) < 5).sum()) for h in heldout)  # noqa
    measures = {"heldout_top5_hits": hits,
                f"{optimised}_logit": lambda r: np.mean(r[f"{optimised}_logit"]),
                "objectness": lambda r: np.mean(r["objectness"])}
    return {name: [round(float(v), 4) for v in paired_difference(per_unit(a, f), per_unit(b, f))]
            for name, f in measures.items()}


def strip_sheet(runs: dict, class_names, methods: list[str], heldout: list[str],
                optimised: str, path: Path) -> None:
    """One strip (row) per method: each unit's best restart by the optimised model's 8-bit
    logit, captioned with that logit, the held-out ranks and the objectness."""
    images, captions = [], []
    short = lambda s: s.replace("efficientnet_lite", "L")  # noqa: E731
    for method in methods:
        for row in runs[method]:
            b = int(np.argmax(row[f"{optimised}_logit"]))
            images.append(row["image_arrays"][b])
            ranks = " ".join(f"{short(h)}#{row[f'{h}_rank'][b] + 1}" for h in heldout)
            captions.append([f"{method}: {row['unit']} {class_names[row['unit']]}"[:28],
                             f"{short(optimised)} {row[f'{optimised}_logit'][b]:.1f} {ranks}",
                             f"objectness {row['objectness'][b]:.2f}"])
    contact_sheet(images, captions, columns=len(runs[methods[0]]), tile=160).save(path)


def run_all(args, model, judges, detector) -> dict:
    """Every unit, every method in rotating order, judged as it finishes."""
    generators = {m: make_generator(METHODS[m][0]) for m in args.methods}
    runs = {m: [] for m in args.methods}
    starts = {m: [] for m in args.methods}
    for i, unit in enumerate(args.units):
        order = args.methods[i % len(args.methods):] + args.methods[:i % len(args.methods)]
        for method in order:
            load = os.getloadavg()[0]
            got = run_method(model, generators[method], method, unit, budget=args.budget,
                             restarts=args.restarts)
            units = [unit] * len(got["images"])
            row = {"unit": unit, "load_1min_before": round(load, 2),
                   **{k: got[k] for k in ("wall_s", "iterations", "images_scored",
                                          "lite0_logit_float")},
                   **judge(got["images"], units, judges, detector)}
            starts[method].append({"unit": unit, **judge(got["start_images"], units, judges,
                                                         detector)})
            print(f"unit {unit} {method}: {got['wall_s']:.0f} s, {got['iterations']} it, "
                  f"L0 {np.round(row[args.model + '_logit'], 1)}, "
                  f"ranks {[row[h + '_rank'] for h in args.heldout]}", flush=True)
            runs[method].append({**row, "image_arrays": got["images"]})
    return {"runs": runs, "starts": starts}


def markdown_table(record: dict) -> str:
    """The doc's table from a saved record: one column per method."""
    summary, heldout = record["summary"], record["settings"]["heldout"]
    optimised, methods = record["settings"]["model"], list(record["summary"])
    short = lambda s: s.replace("efficientnet_lite", "Lite")  # noqa: E731

    def share(m, key):
        s = summary[m]
        lo, hi = s[f"{key}_ci"]
        return f"{s[key]}/{s['n_images']} ({100 * lo:.0f}–{100 * hi:.0f} %)"

    lines = ["| | " + " | ".join(f"`{m}`" for m in methods) + " |",
             "| --- |" + " --- |" * len(methods)]
    for name in heldout + [optimised]:
        for k in (1, 5):
            lines.append(f"| {short(name)}{' (held out)' * (name != optimised)} top-{k} | "
                         + " | ".join(share(m, f"{name}_top{k}") for m in methods) + " |")
    for key, label, digits in (("lite0_logit_mean_ci", f"mean {short(optimised)} target logit",
                                2), ("objectness_mean_ci", "mean objectness", 3)):
        cells = [f"{summary[m][key][0]:.{digits}f} [{summary[m][key][1]:.{digits}f}, "
                 f"{summary[m][key][2]:.{digits}f}]" for m in methods]
        lines.append(f"| {label} (95 % CI over units) | " + " | ".join(cells) + " |")
    for key, label in (("wall_s_per_unit_mean", "wall time per unit (s)"),
                       ("iterations_per_unit_mean", "steps / generations per unit"),
                       ("images_scored_per_unit_mean", "images through Lite0 per unit")):
        lines.append(f"| {label} | " + " | ".join(f"{summary[m][key]:g}" for m in methods) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--heldout", nargs="*", default=["efficientnet_lite1", "efficientnet_lite2"])
    p.add_argument("--units", nargs="*", type=int, default=list(DEFAULT_UNITS))
    p.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--budget", type=float, default=60.0, help="seconds per unit per method")
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "data" / "maco_vs_fourier.json")
    p.add_argument("--sheet", type=Path, default=ROOT / "docs" / "img" / "maco_vs_fourier.png")
    p.add_argument("--table", type=Path, help="only print the markdown table of a saved record")
    args = p.parse_args(argv)
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    torch.set_num_threads(2)
    model = load_model(args.model)
    judges = {args.model: model, **{h: load_model(h) for h in args.heldout}}
    detector = obj.objectness_detector("auto")
    began = time.time()
    got = run_all(args, model, judges, detector)
    runs, names = got["runs"], model.class_names
    strip_sheet(runs, names, args.methods, args.heldout, args.model, args.sheet)
    for rows in runs.values():
        for row in rows:
            row.pop("image_arrays")
    record = {
        # no machine paths in committed data: paths relative to the repo, the status without
        # where this machine keeps the package
        "settings": {k: (os.path.relpath(v, ROOT) if isinstance(v, Path) else v)
                     for k, v in vars(args).items()},
        "detector": {"name": detector.name,
                     "status": detector.status.replace(str(paths.packages_dir()), "<packages>")},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "total_wall_s": round(time.time() - began, 1)},
        "summary": {m: summarize(r, args.heldout, args.model) for m, r in runs.items()},
        "start_summary": {m: summarize(r, args.heldout, args.model)
                          for m, r in got["starts"].items()},
        "maco_minus": {m: compare(runs["maco"], runs[m], args.heldout, args.model)
                       for m in args.methods if m != "maco" and "maco" in runs},
        "per_unit": runs, "per_unit_start": got["starts"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1, default=float))
    print(markdown_table(record))
    print(json.dumps({k: record[k] for k in ("detector", "maco_minus")}, indent=1))


if __name__ == "__main__":
    main()
