"""``python -m signseg_core COMMAND``: the engine from a terminal.

Commands: ``models`` (the zoo and whether each model's weights are here), ``dale MODEL``
(per-layer Dale index table), ``visualize MODEL`` (preferred images per ablation condition, into
the store), ``sweep`` / ``report`` (metrics over units, docs/reproduction.md), ``select-classes``,
``import-bundle`` / ``import-sweep`` (results made elsewhere), ``bench`` (engine throughput) and
``neurons fit|ablate|dale-features|diverse-set|localize|demo`` (models of recorded neurons).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from signseg_core.cli.options import (
    PRECISIONS,
    add_evolution_args,
    generator_options,
    settings_from_args,
    signs_from_args,
)
from signseg_core.errors import SignsegError


def _cmd_models(args: argparse.Namespace) -> int:
    import pandas as pd

    from signseg_core.models.registry import list_models

    table = pd.DataFrame(list_models())
    if not args.all:
        table = table[table.family != "test"]
    table["weights"] = table.weights_present.map({True: "present", False: "missing"})
    cols = ["name", "family", "input_size", "top1", "weights", "weights_path"]
    print(table[cols].to_string(index=False))
    return 0


def _cmd_dale(args: argparse.Namespace) -> int:
    from signseg_core.models.registry import load_model
    from signseg_core.signs import (
        compare_trained_untrained,
        layer_summary,
        rank_channels,
        ratio_summary,
    )

    model = load_model(args.model, device=args.device, weights=args.weights,
                       untrained=args.untrained, seed=args.seed)
    if args.rank:
        layer = model.layer(args.rank)
        ranking = rank_channels(layer.weight.detach(), groups=getattr(layer, "groups", 1))
        k = args.top
        print(f"{model.name} {args.rank}: {len(ranking)} sender channels, most positive first")
        shown = ranking if len(ranking) <= 2 * k else _ends(ranking, k)
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        return 0
    table = layer_summary(model.layers)
    if args.compare_untrained and not args.untrained:
        untrained = load_model(args.model, device=args.device, untrained=True, seed=args.seed)
        table = compare_trained_untrained(model.layers, untrained.layers)
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
        print(f"wrote {len(table)} layers to {args.csv}", file=sys.stderr)
    shown = table.drop(columns=[c for c in ("hist",) if c in table.columns])
    print(f"{model.name} ({model.weights_source}), fingerprint {model.fingerprint}")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    mean, std = ratio_summary(model.readout.weight.detach())
    print(f"readout positive/negative weight ratio per unit: {mean:.3f} ± {std:.3f} (Table 2)")
    return 0


def _ends(table, k: int):
    """The first and last ``k`` rows of a ranking, with a marker row between."""
    import pandas as pd

    gap = pd.DataFrame([{c: "..." for c in table.columns}])
    return pd.concat([table.head(k).astype(object), gap, table.tail(k).astype(object)])


def _cmd_visualize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from signseg_core.conditions import condition_grid
    from signseg_core.models.registry import load_model
    from signseg_core.models.zoo import resolve_device
    from signseg_core.optimize.bench import configure_cuda
    from signseg_core.optimize.visualize import summary_table, visualize

    device = resolve_device(args.device)
    if device.type == "cuda":
        configure_cuda()
    model = load_model(args.model, device=device, weights=args.weights, untrained=args.untrained)
    conditions = condition_grid(args.unit, signs=signs_from_args(args), alphas=args.alphas)
    settings = settings_from_args(args)
    with tqdm(total=settings.generations, desc="generations", unit="gen",
              disable=args.quiet) as bar:
        def progress(done, total):
            bar.update(done - bar.n)

        results = visualize(model, conditions, settings=settings, progress=progress,
                            batch_size=args.batch_size, compile=args.compile)
    table = summary_table(results, model.class_names)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    stored = sum(r.from_store for r in results)
    print(f"{len(results)} conditions ({stored} from the store) × {settings.restarts} restarts")
    return 0


def _cmd_import_bundle(args: argparse.Namespace) -> int:
    from signseg_core.generators.catalog import make_generator
    from signseg_core.models.registry import load_model
    from signseg_core.sweeps.bundle import import_bundle

    model = load_model(args.model, weights=args.weights)
    generator = make_generator(args.generator, **generator_options(args.generator_option))
    results = import_bundle(args.path, model, generator, rescore=args.rescore)
    units = sorted({r.key.unit for r in results})
    print(f"imported {len(results)} conditions of {model.name} (units {units}) into the store")
    return 0


def _cmd_import_sweep(args: argparse.Namespace) -> int:
    from signseg_core.sweeps.bundle import import_sweep_rows

    lines = import_sweep_rows(args.table)
    for line in lines if not args.quiet else []:
        print(line)
    imported = sum(": imported " in line for line in lines)
    there = sum(line.endswith("already in the store") for line in lines)
    print(f"metric rows of {len(lines)} units: {imported} imported, {there} already in the store, "
          f"{len(lines) - imported - there} not imported")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from signseg_core.models.imagenet import DEFAULT_UNITS
    from signseg_core.sweeps.run import SweepSpec, run_sweep

    spec = SweepSpec(models=tuple(args.models), units=tuple(args.units or DEFAULT_UNITS),
                     signs=signs_from_args(args), alphas=args.alphas,
                     settings=settings_from_args(args),
                     ensemble=tuple(args.ensemble),
                     lpips=not args.no_lpips,
                     detector=None if args.detector == "none" else args.detector)
    result = run_sweep(spec, device=args.device, batch_size=args.batch_size,
                       progress=None if args.quiet else lambda m: print(m, file=sys.stderr))
    files = result.save(args.out, stem=args.stem)
    cols = ["model", "sign", "alpha", "n_units", "activation", "intact_activation", "similarity",
            "lpips_similarity", "objectness"]
    print(result.summary()[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for name, status in result.statuses.items():
        if name != "spec":
            print(f"{name}: {status}")
    print(f"{len(result.table)} images; wrote {', '.join(str(f) for f in files[:2])} ...")
    return 0


def _cmd_select_classes(args: argparse.Namespace) -> int:
    import numpy as np

    from signseg_core.models.registry import load_model
    from signseg_core.stimuli.selection import (
        model_outputs_for_folder,
        select_classes_by_clustering,
    )

    model = load_model(args.model, device=args.device)
    files, logits = model_outputs_for_folder(model, args.folder)
    classes = select_classes_by_clustering(logits, n_clusters=args.n, linkage=args.linkage,
                                           max_images=args.max_images)
    for unit in classes:
        print(f"{unit}\t{model.class_names[unit]}")
    if args.out:
        np.savetxt(args.out, np.array(classes, dtype=int), fmt="%d")
    print(f"{len(classes)} classes from {len(files)} images", file=sys.stderr)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from signseg_core.sweeps.report import build_report

    path = build_report(device=args.device)
    print(f"wrote {path}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from signseg_core.optimize.bench import main_bench

    return main_bench(args)


def build_parser() -> argparse.ArgumentParser:
    from signseg_core.metrics.similarity import DEFAULT_ENSEMBLE

    parser = argparse.ArgumentParser(prog="python -m signseg_core",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the zoo and whether each model's weights are here")
    p.add_argument("--all", action="store_true", help="include test-only models")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("dale", help="per-layer Dale index of a model")
    p.add_argument("model")
    p.add_argument("--csv", help="also write the table to this CSV file")
    p.add_argument("--weights", help="a checkpoint to load instead of the model's own weights")
    p.add_argument("--untrained", action="store_true", help="random initialisation (see --seed)")
    p.add_argument("--compare-untrained", action="store_true",
                   help="add the untrained network's values and the difference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rank", metavar="LAYER",
                   help="rank LAYER's sender channels from most positive to most negative")
    p.add_argument("--top", type=int, default=10, help="with --rank: rows shown at each end")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_dale)

    p = sub.add_parser("visualize", help="preferred images per ablation condition (cached)")
    p.add_argument("model")
    p.add_argument("--unit", type=int, nargs="+", required=True, help="readout unit(s)")
    add_evolution_args(p)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--compile", action="store_true",
                   help="score through torch.compile (pays off on long CUDA runs)")
    p.add_argument("--weights", help="a checkpoint to load instead of the model's own weights")
    p.add_argument("--untrained", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_visualize)

    p = sub.add_parser("sweep", help="models x units x signs x alphas: images and metrics table")
    p.add_argument("--models", nargs="+", default=["efficientnet_lite0"])
    p.add_argument("--units", type=int, nargs="+", default=None,
                   help="default: the paper's 11 units")
    add_evolution_args(p)
    p.add_argument("--ensemble", nargs="+", default=list(DEFAULT_ENSEMBLE))
    p.add_argument("--no-lpips", action="store_true")
    p.add_argument("--detector", default="fasterrcnn_mobilenet_v3_large_320_fpn",
                   help="a torchvision COCO detector, or none")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--out", default="sweep_out", help="folder for the CSV/Parquet tables")
    p.add_argument("--stem", default="sweep")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("select-classes",
                       help="one class per cluster of a model's outputs over an image folder")
    p.add_argument("folder")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--n", type=int, default=100, help="clusters = classes (paper: 100)")
    p.add_argument("--linkage", default="average", choices=("average", "ward", "complete",
                                                            "single"))
    p.add_argument("--max-images", type=int, default=None,
                   help="cluster a seeded subset (memory grows with the square of the images)")
    p.add_argument("--out", help="also write the class indices, one per line")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_select_classes)

    p = sub.add_parser("report", help="regenerate docs/reproduction.md")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("import-bundle", help="put a bundle made elsewhere into the store")
    p.add_argument("path")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", default=None)
    p.add_argument("--generator", default="fourier")
    p.add_argument("--generator-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--rescore", action="store_true",
                   help="recompute the intact unit's logits here (slow on a CPU)")
    p.set_defaults(func=_cmd_import_bundle)

    p = sub.add_parser("import-sweep",
                       help="put a saved sweep's metric rows into the store (images must be there)")
    p.add_argument("table", help="the sweep's per-image <stem>.parquet; <stem>_spectra.parquet "
                                 "and <stem>_status.json beside it")
    p.add_argument("--quiet", action="store_true", help="print only the summary line")
    p.set_defaults(func=_cmd_import_sweep)

    p = sub.add_parser("bench", help="images/s: batched engine vs naive pycma vs raw forward")
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default=None,
                   help="default: efficientnet_lite0 (CPU), alexnet (CUDA)")
    p.add_argument("--generator", default=None, help="default: fourier (CPU), deepsim (CUDA)")
    p.add_argument("--evolutions", type=int, default=None)
    p.add_argument("--generations", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--precision", choices=PRECISIONS, default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="score through torch.compile (default: on for CUDA, off for CPU)")
    p.add_argument("--sweep", action="store_true", help="also time the paper's Fig 2 sweep")
    p.add_argument("--sweep-generations", type=int, default=100,
                   help="generations to run; the time for 100 is extrapolated")
    p.add_argument("--sweep-restarts", type=int, default=20)
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    p.set_defaults(func=_cmd_bench)

    from signseg_core.cli.neurons import add_neurons_parser  # the `neurons ...` subcommands

    add_neurons_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SignsegError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
