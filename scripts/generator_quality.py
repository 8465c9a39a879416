"""How good are the weight-free generators' preferred images on the embedded model?

For each generator, batched CMA-ES (:func:`signseg_core.optimize.visualize.visualize`) evolves
images for the control condition (alpha = 0) of each unit on the optimised model (EfficientNet-Lite0
by default), and the best images are judged three ways:

1. their target logit against the same unit's logits on natural images (random crops of
   scikit-learn's two sample photos, which show a Chinese temple and a flower: *not* the target
   classes) and against the top-1 logit a natural image reaches;
2. held-out recognisability: the share whose target class is top-1 / top-5 of networks that were
   not optimised (EfficientNet-Lite1 and Lite2);
3. best-so-far activation per generation and wall time.

Results are merged into a JSON file under ``runs[tag]``; a contact sheet of the best image per
unit is written per run. Reproduce the committed numbers (a 2-core CPU: about 25 minutes of
work at Lite0's 36 images/s)::

    python scripts/generator_quality.py --generators fourier pixel
    python scripts/generator_quality.py --generators fourier --generations 40 \
        --units 0 217 482 491 --tag-suffix _g40
    for opt in max_freq=8 max_freq=20 decay=1.0; do
        python scripts/generator_quality.py --generators fourier --option $opt \
            --units 0 491 574 373 --restarts 1 --no-sheet
    done
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere

from signseg_core.conditions import Condition  # noqa: E402
from signseg_core.models.imagenet import DEFAULT_UNITS  # noqa: E402
from signseg_core.optimize.results import ConditionResult
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.visualize import visualize

Scorer = Callable[[Tensor], Tensor]  # images (N, 3, H, W) in [0, 1] -> logits (N, C)


# -- natural images ---------------------------------------------------------------------------

def sample_photos() -> list[np.ndarray]:
    """scikit-learn's two sample photos (china.jpg, flower.jpg), uint8 (427, 640, 3) each."""
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)


def natural_crops(photos: Sequence[np.ndarray], n: int = 64, *, seed: int = 0, size: int = 224,
                  min_frac: float = 0.25) -> Tensor:
    """``n`` seeded random square crops, resized to ``size``: Tensor (n, 3, size, size) in [0, 1].

    Crop ``i`` comes from photo ``i % len(photos)``; its side is uniform in
    [min_frac, 1] x the photo's shorter side, its position uniform; half are mirrored.
    """
    if n < 1 or not photos:
        raise ValueError(f"need n >= 1 and at least one photo; got n={n}, {len(photos)} photos")
    if not 0 < min_frac <= 1:
        raise ValueError(f"min_frac must be in (0, 1]; got {min_frac!r}")
    rng = np.random.default_rng(seed)
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(round(rng.uniform(min_frac, 1.0) * min(h, w)))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = torch.from_numpy(np.ascontiguousarray(photo[top:top + side, left:left + side]))
        crop = crop.permute(2, 0, 1)[None].float() / 255.0
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        out[i] = torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear",
                                                 align_corners=False, antialias=True)[0]
    return out.clamp(0, 1)


def batched_logits(model: Scorer, images: Tensor, *, batch_size: int = 32) -> Tensor:
    """Logits (N, C) of ``images`` (N, 3, H, W) in [0, 1], ``batch_size`` at a time, no grad."""
    with torch.inference_mode():
        return torch.cat([model(images[i:i + batch_size]).float().cpu()
                          for i in range(0, len(images), batch_size)])


def natural_logit_stats(logits: Tensor, units: Sequence[int], *,
                        extra_units: Sequence[int] = ()) -> dict:
    """Per-unit mean and max logit over natural images, and the top-1 logit they reach.

    logits : (N, C). Returns ``per_unit`` {unit: {mean, max}} for ``units`` and ``extra_units``,
    ``mean_of_unit_means`` and ``mean_of_unit_maxes`` over ``units`` only, and
    ``top1_logit_mean`` / ``top1_logit_max`` (over images).
    """
    per_unit = {int(u): {"mean": float(logits[:, u].mean()), "max": float(logits[:, u].max())}
                for u in dict.fromkeys([*units, *extra_units])}
    top1 = logits.max(1).values
    return {"per_unit": per_unit, "summary_units": [int(u) for u in units],
            "mean_of_unit_means": float(np.mean([per_unit[int(u)]["mean"] for u in units])),
            "mean_of_unit_maxes": float(np.mean([per_unit[int(u)]["max"] for u in units])),
            "top1_logit_mean": float(top1.mean()), "top1_logit_max": float(top1.max()),
            "n_images": int(logits.shape[0])}


# -- judging the evolved images -----------------------------------------------------------------

def target_ranks(logits: Tensor, targets: Sequence[int]) -> np.ndarray:
    """Rank of each target among its row's logits (0 = top-1): classes strictly above it."""
    targets = torch.as_tensor(list(targets), dtype=torch.long)
    if logits.ndim != 2 or len(targets) != logits.shape[0]:
        raise ValueError(f"need logits (N, C) and N targets; got {tuple(logits.shape)}, "
                         f"{len(targets)} targets")
    own = logits.gather(1, targets[:, None])
    return (logits > own).sum(1).numpy()


def recognition(logits: Tensor, targets: Sequence[int]) -> dict:
    """Share of images whose target is top-1 / top-5, and the mean softmax probability of it."""
    ranks = target_ranks(logits, targets)
    probs = logits.softmax(1).gather(1, torch.as_tensor(list(targets))[:, None])[:, 0]
    return {"top1": float(np.mean(ranks < 1)), "top5": float(np.mean(ranks < 5)),
            "mean_target_prob": float(probs.mean()), "ranks": ranks.tolist()}


def best_so_far_curves(results: Sequence[ConditionResult]) -> dict:
    """Activation vs generation from each result's ``max_per_gen`` (G, R).

    ``best_over_restarts``: mean over units of the best score found so far by any restart (its
    last entry is the mean best activation); ``per_restart``: mean over units and restarts of each
    restart's own best so far. Both lists of length G.
    """
    cum = [np.fmax.accumulate(r.max_per_gen, axis=0) for r in results]  # each (G, R)
    return {"best_over_restarts": np.mean([c.max(1) for c in cum], axis=0).tolist(),
            "per_restart": np.mean([c.mean(1) for c in cum], axis=0).tolist()}


def contact_sheet(images: Sequence[np.ndarray], captions: Sequence[Sequence[str]], *,
                  columns: int = 4, tile: int = 192, line_height: int = 14):
    """Tiles of uint8 (H, W, 3) images with caption lines below each; returns a PIL image."""
    from PIL import Image, ImageDraw, ImageFont

    if len(images) != len(captions) or not images:
        raise ValueError(f"need as many captions as images (>= 1); got {len(images)}, "
                         f"{len(captions)}")
    lines = max(len(c) for c in captions)
    cell_h = tile + 4 + lines * line_height + 4
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * (tile + 8), rows * cell_h), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=11)
    for i, (im, cap) in enumerate(zip(images, captions)):
        x, y = (i % columns) * (tile + 8) + 4, (i // columns) * cell_h + 4
        sheet.paste(Image.fromarray(im).resize((tile, tile), Image.Resampling.LANCZOS), (x, y))
        for j, text in enumerate(cap):
            draw.text((x, y + tile + 2 + j * line_height), text, fill="black", font=font)
    return sheet


def sheet_caption(row: dict, optimised: str, heldout: Sequence[str]) -> list[str]:
    """Caption lines for a unit's best image: class, logit, held-out ranks and top-1 class."""
    b = row["best_restart"]
    short = lambda name: name.replace("efficientnet_lite", "Lite")  # noqa: E731
    lines = [f"{row['unit']} {row['class']}"[:32],
             f"{short(optimised)} logit {row[f'{optimised}_target_logit'][b]:.1f}"]
    if heldout:
        lines.append("rank " + ", ".join(f"{short(h)} #{row[f'{h}_rank'][b] + 1}" for h in heldout))
        lines.append(f"{short(heldout[-1])} top-1: {row[f'{heldout[-1]}_top1_class'][b]}"[:32])
    return lines


def judge(results: Sequence[ConditionResult], models: dict[str, Scorer],
          class_names: Sequence[str]) -> dict:
    """Logits and recognisability of every best image (all restarts) under each model.

    ``models`` maps a name to a scorer; each scores the uint8 images the user sees. Returns
    ``per_unit`` rows and ``recognition`` {model name: :func:`recognition` of all images}.
    """
    images = np.concatenate([r.images for r in results])
    targets = [r.key.unit for r in results for _ in range(len(r.images))]
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    logits = {name: batched_logits(m, batch) for name, m in models.items()}
    rec = {name: recognition(lg, targets) for name, lg in logits.items()}
    per_unit, start = [], 0
    for r in results:
        stop = start + len(r.images)
        row = {"unit": r.key.unit, "class": class_names[r.key.unit],
               "best_scores": r.best_scores.tolist(), "intact_scores": r.intact_scores.tolist(),
               "best_restart": r.best_index}
        for name, lg in logits.items():
            row[f"{name}_target_logit"] = lg[start:stop, r.key.unit].tolist()
            row[f"{name}_rank"] = rec[name]["ranks"][start:stop]
            row[f"{name}_top1_class"] = [class_names[int(k)] for k in lg[start:stop].argmax(1)]
        per_unit.append(row)
        start = stop
    return {"per_unit": per_unit, "recognition": rec}


def run_generator(model, generator: str, units: Sequence[int], *, generations: int,
                  restarts: int, seed: int = 0, options: dict | None = None,
                  progress: Callable[[int, int], None] | None = None):
    """Evolve the control condition of every unit (no store); returns (results, wall seconds)."""
    options = tuple(sorted((options or {}).items()))
    settings = VisualizeSettings(generator=generator, generations=generations, restarts=restarts,
                                 seed=seed, generator_options=options)
    start = time.perf_counter()
    results = visualize(model, [Condition(int(u), "positive", 0.0) for u in units],
                        settings=settings, store=False, progress=progress)
    return results, time.perf_counter() - start


def summarize(results: Sequence[ConditionResult], judged: dict, *, wall_s: float,
              settings: dict, optimised: str) -> dict:
    """The JSON record of one run: settings, headline numbers, curves, per-unit detail."""
    best = [float(np.nanmax(r.intact_scores)) for r in results]  # best restart per unit
    G, R = results[0].max_per_gen.shape
    popsize = settings["popsize"]
    n_scored = G * R * len(results) * popsize
    return {**settings,
            "wall_s": round(wall_s, 1), "images_scored": n_scored,
            "images_per_s": round(n_scored / wall_s, 1),
            "mean_best_logit": float(np.mean(best)),
            "mean_logit_all_restarts": float(np.mean([r.intact_scores.mean() for r in results])),
            "recognition": {k: {m: v[m] for m in ("top1", "top5", "mean_target_prob")}
                            for k, v in judged["recognition"].items()},
            "optimised_model": optimised,
            "curve": best_so_far_curves(results), "per_unit": judged["per_unit"]}


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"option {text!r} is not KEY=VALUE")
    return key, json.loads(value) if value[:1] in "-0123456789[" else value


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: see the module docstring and ``--help``."""
    from signseg_core.models.registry import load_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--heldout", nargs="*", default=["efficientnet_lite1", "efficientnet_lite2"])
    p.add_argument("--generators", nargs="*", default=["fourier", "pixel"],
                   help="none: only (re)compute the natural-image statistics")
    p.add_argument("--units", nargs="+", type=int, default=list(DEFAULT_UNITS))
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", action="append", type=_option, default=[],
                   help="generator option KEY=VALUE, e.g. max_freq=8 (repeatable)")
    p.add_argument("--natural-crops", type=int, default=64)
    p.add_argument("--tag-suffix", default="")
    p.add_argument("--json", type=Path, default=Path("docs/generator_quality.json"))
    p.add_argument("--sheet-dir", type=Path, default=Path("docs/img"))
    p.add_argument("--no-sheet", action="store_true")
    args = p.parse_args(argv)

    torch.manual_seed(0)  # nothing should draw from it; fixed in case something does
    model = load_model(args.model)
    scorers = {args.model: model, **{h: load_model(h) for h in args.heldout}}
    report = json.loads(args.json.read_text()) if args.json.is_file() else {"runs": {}}
    crops = natural_crops(sample_photos(), args.natural_crops, seed=args.seed)
    report["natural"] = {
        "source": "sklearn.datasets.load_sample_images (china.jpg, flower.jpg): not the target "
                  f"classes; {args.natural_crops} seeded square crops (seed {args.seed}), side "
                  "25-100% of the shorter side, half mirrored, resized to 224",
        **{name: natural_logit_stats(batched_logits(m, crops), DEFAULT_UNITS,
                                     extra_units=args.units)
           for name, m in scorers.items()}}
    _write_json(report, args.json)
    for gen_name in args.generators:
        tag, record = _evaluate_generator(gen_name, model, scorers, args)
        report["runs"][tag] = record
        _write_json(report, args.json)
        print(f"[{tag}] wall {record['wall_s']:.0f} s, mean best logit "
              f"{record['mean_best_logit']:.2f}; " + "; ".join(
                  f"{k}: top1 {v['top1']:.2f} top5 {v['top5']:.2f}"
                  for k, v in record["recognition"].items()), flush=True)


def _write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")


def _evaluate_generator(gen_name: str, model, scorers: dict, args) -> tuple[str, dict]:
    """One generator's run, judgement, record and contact sheet; returns (tag, record)."""
    from signseg_core.generators.catalog import make_generator

    options = dict(args.option)
    tag = gen_name + "".join(f"_{k}{v}" for k, v in sorted(options.items())) + args.tag_suffix
    gen = make_generator(gen_name, **options)
    settings = VisualizeSettings(generator=gen_name)
    popsize = settings.cma_config(gen.sigma0).strategy_parameters(gen.dim)["popsize"]
    print(f"[{tag}] d={gen.dim} popsize={popsize}, {len(args.units)} units x "
          f"{args.restarts} restarts x {args.generations} generations", flush=True)
    tick = lambda done, total: print(f"  generation {done}/{total}", flush=True)  # noqa: E731
    results, wall = run_generator(model, gen_name, args.units, generations=args.generations,
                                  restarts=args.restarts, seed=args.seed, options=options,
                                  progress=tick)
    judged = judge(results, scorers, model.class_names)
    record = summarize(results, judged, wall_s=wall, optimised=args.model, settings={
        "generator": gen_name, "options": options, "dim": gen.dim, "popsize": popsize,
        "units": args.units, "generations": args.generations, "restarts": args.restarts,
        "seed": args.seed, "step_size_rule": settings.step_size_rule,
        "machine": f"CPU, {torch.get_num_threads()} threads"})
    if not args.no_sheet:
        args.sheet_dir.mkdir(parents=True, exist_ok=True)
        caps = [sheet_caption(row, args.model, args.heldout) for row in judged["per_unit"]]
        path = args.sheet_dir / f"quality_{tag}.png"
        contact_sheet([r.best_image for r in results], caps).save(path, optimize=True)
        record["sheet"] = str(path)
    return tag, record

if __name__ == "__main__":
    main()
