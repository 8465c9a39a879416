"""The bodies of ``python -m signseg_core COMMAND``: each reads its parsed arguments, calls the
engine and prints. The parser (:mod:`signseg_core.cli.main`) loads this module only when a command
runs, so ``--help`` and argument errors stay quick.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from signseg_core.cli.options import (
    generator_options,
    settings_from_args,
    signs_from_args,
)
from signseg_core.generators.catalog import make_generator
from signseg_core.metrics.stats import correlation, describe_correlation
from signseg_core.models.imagenet import DEFAULT_UNITS
from signseg_core.models.registry import get_entry, list_models, load_model, registry
from signseg_core.models.zoo import note_absent_layers, resolve_device
from signseg_core.optimize.bench import configure_cuda, main_bench
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.results import summary_table
from signseg_core.optimize.settings import describe_run
from signseg_core.optimize.visualize import run_request
from signseg_core.signs import (
    compare_trained_untrained,
    layer_summary,
    rank_channels,
    ratio_summary,
    readout_dale_vs_accuracy,
)
from signseg_core.stimuli.selection import (
    model_outputs_for_folder,
    select_classes_by_clustering,
)
from signseg_core.sweeps.bundle import export_bundle, import_bundle, import_sweep_rows
from signseg_core.sweeps.cluster import dry_run_table, run_sweep_on_ray
from signseg_core.sweeps.report import build_report
from signseg_core.sweeps.run import SweepSpec, run_sweep


def cmd_models(args: argparse.Namespace) -> int:


    table = pd.DataFrame(list_models())
    if not args.all:
        table = table[table.family != "test"]
    table["weights"] = table.weights_present.map({True: "present", False: "missing"})
    table["readout"] = table.has_readout.map({True: "yes", False: "no (Dale pages only)"})
    cols = ["name", "family", "input_size", "top1", "weights", "readout", "weights_path"]
    print(table[cols].to_string(index=False))
    # Weights a command fetches: say which command, as loading them would.
    for sentence in table[~table.weights_present & (table.family == "packaged")].weights_missing:
        print(sentence)
    return 0


def cmd_dale(args: argparse.Namespace) -> int:

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
    table = note_absent_layers(table, model)  # e.g. alexnet_conv's fc6: said, not left out
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
        print(f"wrote {len(table)} layers to {args.csv}", file=sys.stderr)
    shown = table.drop(columns=[c for c in ("hist",) if c in table.columns])
    absent = shown.layer.isin([layer.name for layer in model.absent_layers])
    shown.loc[absent, "note"] = "absent (see below)"  # the CSV keeps the whole sentence
    print(f"{model.name} ({model.weights_source}), fingerprint {model.fingerprint}")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for layer in model.absent_layers:
        print(f"{layer.name}: {layer.note}")
    if not model.has_readout:
        print(f"no readout, so no readout sign ratio (Table 2): {model.no_readout}")
        return 0
    mean, std = ratio_summary(model.readout.weight.detach())
    print(f"readout positive/negative weight ratio per unit: {mean:.3f} ± {std:.3f} (Table 2)")
    return 0


def read_top1_csv(path) -> dict[str, float]:
    """``model,top1`` rows of a CSV → {model: top-1 in percent}; one sentence if it is not that."""
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the top-1 CSV {str(path)!r}: {exc}") from None
    if not {"model", "top1"} <= set(table.columns):
        raise ValueError(f"the top-1 CSV {str(path)!r} needs columns model,top1; it has "
                         f"{list(table.columns)}")
    top1 = pd.to_numeric(table.top1, errors="coerce")
    bad = table.model[top1.isna() | (top1 < 0) | (top1 > 100)].tolist()
    if bad:
        raise ValueError(f"the top-1 CSV {str(path)!r} has no percentage in [0, 100] for {bad}")
    dupes = table.model[table.model.duplicated()].tolist()
    if dupes:
        raise ValueError(f"the top-1 CSV {str(path)!r} names {dupes} more than once")
    return dict(zip(table.model.astype(str), top1.astype(float)))


def dale_top1_rows(names, top1: dict[str, float]) -> tuple[list, list[str], list[str]]:
    """The (name, readout weight, top-1) of each model that has weights here and a top-1; the
    source of each top-1; and one sentence per model skipped, saying why."""
    rows, sources, skipped = [], [], []
    for name in names:
        entry = get_entry(name)
        info = entry.info()
        acc = top1.get(name, entry.top1)
        if not info["weights_present"]:
            where = info["weights_path"] or "no file"
            skipped.append(f"{name}: skipped, its weights are not on this machine ({where}).")
        elif not entry.has_readout:
            skipped.append(f"{name}: skipped, it has no readout layer ({entry.no_readout}).")
        elif acc is None:
            skipped.append(f"{name}: skipped, the zoo has no top-1 for it (give one with "
                           "--top1-csv).")
        else:
            rows.append((name, load_model(name).readout.weight.detach(), acc))
            sources.append("csv" if name in top1 else "zoo")
    return rows, sources, skipped


def cmd_dale_vs_top1(args: argparse.Namespace) -> int:

    top1 = read_top1_csv(args.top1_csv) if args.top1_csv else {}
    zoo = registry()
    names = args.models or [n for n, e in zoo.items() if e.family != "test"]
    rows, sources, skipped = dale_top1_rows(names, top1)
    for name in sorted(set(top1) - set(zoo)):
        skipped.append(f"{name}: in the top-1 CSV but not in the zoo, so not used.")
    table = readout_dale_vs_accuracy(rows).assign(top1_source=sources)
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
    for line in skipped:
        print(line)
    if len(table):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    result = correlation(table.mean_dale, table.top1)
    print(f"readout Dale index vs top-1: {describe_correlation(result)}")
    return 0


def _ends(table, k: int):
    """The first and last ``k`` rows of a ranking, with a marker row between."""
    gap = pd.DataFrame([{c: "..." for c in table.columns}])
    return pd.concat([table.head(k).astype(object), gap, table.tail(k).astype(object)])


def cmd_visualize(args: argparse.Namespace) -> int:


    device = resolve_device(args.device)
    if device.type == "cuda":
        configure_cuda()
    model = load_model(args.model, device=device, weights=args.weights, untrained=args.untrained)
    settings = settings_from_args(args)
    generator = make_generator(settings.generator, device=model.device,
                               **dict(settings.generator_options))
    request = VisualizeRequest.for_units(model, generator, args.unit, settings,
                                         signs=signs_from_args(args), alphas=args.alphas)
    with tqdm(total=settings.generations, desc="generations", unit="gen",
              disable=args.quiet) as bar:
        def progress(done, total):
            bar.update(done - bar.n)

        results = run_request(request, progress=progress, batch_size=args.batch_size,
                              compile=args.compile)
    table = summary_table(results, model.class_names)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    stored = sum(r.from_store for r in results)
    print(f"{len(results)} conditions ({stored} from the store) × {settings.restarts} restarts")
    steps = "" if getattr(generator, "method", "") == "gradient" else \
        f", {settings.generations} generations"  # a gradient generator's words count its steps
    print(f"optimiser: {describe_run(settings, generator)}{steps}")
    if args.bundle:
        path = export_bundle(results, args.bundle)
        options = "".join(f" --generator-option {k}={v}" for k, v in settings.generator_options)
        print(f"bundle: {len(results)} conditions in {path} (where they go: python -m "
              f"signseg_core import-bundle {path.name} --model {model.name} --generator "
              f"{settings.generator}{options})")
    return 0


def cmd_import_bundle(args: argparse.Namespace) -> int:

    model = load_model(args.model, weights=args.weights)
    generator = make_generator(args.generator, **generator_options(args.generator_option))
    results = import_bundle(args.path, model, generator, rescore=args.rescore)
    units = sorted({r.key.unit for r in results})
    print(f"imported {len(results)} conditions of {model.name} (units {units}) into the store")
    return 0


def cmd_import_sweep(args: argparse.Namespace) -> int:

    lines = import_sweep_rows(args.table)
    for line in lines if not args.quiet else []:
        print(line)
    imported = sum(": imported " in line for line in lines)
    there = sum(line.endswith("already in the store") for line in lines)
    print(f"metric rows of {len(lines)} units: {imported} imported, {there} already in the store, "
          f"{len(lines) - imported - there} not imported")
    return 0


def sweep_spec_from_args(args: argparse.Namespace) -> SweepSpec:
    """The :class:`~signseg_core.sweeps.run.SweepSpec` of ``python -m signseg_core sweep``'s
    arguments (the one place they become a spec; ``sweep_command`` writes the reverse)."""
    return SweepSpec(models=tuple(args.models), units=tuple(args.units or DEFAULT_UNITS),
                     generators=tuple(args.generators), signs=signs_from_args(args),
                     alphas=args.alphas, settings=settings_from_args(args),
                     ensemble=tuple(args.ensemble), lpips=not args.no_lpips,
                     detector=None if args.detector == "none" else args.detector)



def cmd_sweep(args: argparse.Namespace) -> int:
    spec = sweep_spec_from_args(args)
    print(f"image set per condition: {spec.image_set}", file=sys.stderr)
    say = None if args.quiet else (lambda m: print(m, file=sys.stderr))
    if args.dry_run:
        return print_plan(spec, args.device)
    if args.cluster is False:
        result = run_sweep(spec, device=args.device, batch_size=args.batch_size, progress=say)
    else:
        result = cluster_sweep(spec, args, say)
    files = result.save(args.out, stem=args.stem)
    cols = ["model", "sign", "alpha", "n_units", "activation", "intact_activation", "similarity",
            "similarity_full", "lpips_similarity", "objectness"]
    print(result.summary()[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for name, status in result.statuses.items():
        if name not in ("spec", "identities"):
            print(f"{name}: {status}")
    print(f"{len(result.table)} images; wrote {', '.join(str(f) for f in files[:2])} ...")
    return 0


def print_plan(spec: SweepSpec, device: str) -> int:
    """``sweep --dry-run``: the plan per model and generator, and its projected hours."""
    table = dry_run_table(spec, device)
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.1f}"))
    measured = table.dropna(subset=["hours"])
    print(f"{table.evolutions.sum():,} evolutions, {table.images.sum():,} images; "
          f"{measured.hours.sum():,.1f} {device}-hours for the {len(measured)} of {len(table)} "
          f"model x generator pairs measured here")
    for row in table[table.hours.isna()].itertuples():
        print(f"{row.model} x {row.generator}: no images/s on {device} here (run the same "
              "--dry-run on a machine with that device and the weights: it measures there)")
    return 0


def cluster_sweep(spec, args: argparse.Namespace, say):
    """``sweep --cluster``: the evolutions on Ray under one bar (units done, images/s across
    the cluster), then the metrics here."""
    bar = None

    def units_done(done: int, total: int, rate: float) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="unit", desc="cluster", disable=args.quiet)
        bar.update(done - bar.n)
        bar.set_postfix_str(f"{rate:.0f} img/s")

    try:
        return run_sweep_on_ray(spec, address=args.cluster, device=args.device,
                                batch_size=args.batch_size, gpus_per_task=args.gpus_per_task,
                                progress=say, units_done=units_done)
    finally:
        if bar is not None:
            bar.close()


def cmd_select_classes(args: argparse.Namespace) -> int:


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


def cmd_report(args: argparse.Namespace) -> int:

    path = build_report(device=args.device)
    print(f"wrote {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:

    return main_bench(args)
