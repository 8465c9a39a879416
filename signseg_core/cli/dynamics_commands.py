"""``python -m signseg_core weight-dynamics``: weight dynamics vs Dale index (paper Fig 25).

The parser and the body live here; :mod:`signseg_core.cli.main` adds the parser.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
from tqdm import tqdm

from signseg_core.analyses.dynamics import DEFAULT_THRESHOLD, WeightDynamics, weight_dynamics
from signseg_core.analyses.dynamics_files import DynamicsError, write_demo_checkpoints
from signseg_core.analyses.dynamics_stats import (
    DEFAULT_BINS,
    DEFAULT_PERMUTATIONS,
    convergence_correlation,
    describe_windows_test,
    narrower_windows_test,
    spread_by_bin,
)
from signseg_core.cli.options import command
from signseg_core.metrics.stats import describe_correlation
from signseg_core.store import default_store


def add_dynamics_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``weight-dynamics`` to ``sub``."""
    p = sub.add_parser(
        "weight-dynamics",
        help="Fig 25: per channel, cosine similarity of its outgoing weights to the final "
             "checkpoint's over training, its convergence epoch, final Dale index and fraction "
             "negative; correlation and the narrower-windows test (cached, resumable)")
    p.add_argument("checkpoints", nargs="*", metavar="CHECKPOINT",
                   help="checkpoint files (.pt/.pth/.bin/.ckpt/.tar state dicts, plain or under "
                        "'model'/'state_dict', or .safetensors) in training order; the last is "
                        "the final one")
    p.add_argument("--folder", metavar="DIR",
                   help="instead: every checkpoint file in DIR, in natural order (epoch_2 "
                        "before epoch_10); each name must carry its epoch")
    p.add_argument("--demo", action="store_true",
                   help="instead: the built-in demo, a 4-layer network trained here for 12 "
                        "epochs on synthetic images (not the paper's ResNet18 on ImageNet)")
    p.add_argument("--model", default="", metavar="ARCH",
                   help="a zoo architecture (e.g. resnet18) naming the layers and their conv "
                        "groups; default: every 2-D/4-D '*.weight' of the state dict, groups 1")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="fraction of the final similarity that counts as converged (paper: 0.9)")
    p.add_argument("--bins", type=int, default=DEFAULT_BINS,
                   help="equal-width Dale-index bins over the observed range, for the spread")
    p.add_argument("--permutations", type=int, default=DEFAULT_PERMUTATIONS,
                   help="permutations of the narrower-windows test")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations")
    p.add_argument("--csv", metavar="FILE",
                   help="write one row per channel: the table and its similarity at each epoch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=command("dynamics_commands", "cmd_weight_dynamics"))


def checkpoint_source(args: argparse.Namespace):
    """The folder or list the options name; exactly one of CHECKPOINT..., --folder, --demo."""
    given = [bool(args.checkpoints), args.folder is not None, args.demo]
    if sum(given) != 1:
        raise DynamicsError("give the checkpoints as files, or --folder DIR, or --demo (exactly "
                            "one of them)")
    if args.demo:
        return write_demo_checkpoints()
    return args.folder if args.folder is not None else list(args.checkpoints)


def channel_csv(result: WeightDynamics) -> pd.DataFrame:
    """The per-channel table with ``similarity_epoch_<e>`` columns, one per checkpoint."""
    sims = pd.DataFrame(result.similarity, columns=[f"similarity_epoch_{e:g}"
                                                    for e in result.epochs])
    return pd.concat([result.table.reset_index(drop=True), sims], axis=1)


def cmd_weight_dynamics(args: argparse.Namespace) -> int:
    source = checkpoint_source(args)
    bars: list[tqdm] = []  # made at the first report, so an early error prints no bar

    def progress(done, total, *_):
        if not bars:
            bars.append(tqdm(total=total, desc="checkpoints", unit="ckpt", disable=args.quiet,
                             file=sys.stderr))
        bars[0].total = total
        bars[0].update(done - bars[0].n)

    try:
        result = weight_dynamics(source, threshold=args.threshold, arch=args.model,
                                 store=default_store(), progress=progress)
    finally:
        for bar in bars:
            bar.close()
    table = result.table
    print(f"{len(result.files)} checkpoints ({result.files[0]} … {result.files[-1]}), epochs "
          f"{result.epochs[0]:g}–{result.epochs[-1]:g} from {result.epoch_source}; "
          f"{len(table)} channels in {table['layer'].nunique()} layers; threshold "
          f"{result.threshold:g} of the final similarity.")
    undefined = int(table["convergence_epoch"].isna().sum())
    if undefined:
        print(f"{undefined} channel(s) have all-zero final weights: no direction to converge "
              "to, left out of the statistics.")
    corr = convergence_correlation(table)
    print("Convergence epoch vs Dale index: "
          + describe_correlation(corr, items="channels", caveat=True))
    spread = spread_by_bin(table, bins=args.bins)
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(spread.round(3).to_string(index=False))
    test = narrower_windows_test(table, bins=args.bins, permutations=args.permutations,
                                 seed=args.seed)
    print("Narrower windows at high Dale index? " + describe_windows_test(test))
    if args.csv:
        channel_csv(result).to_csv(args.csv, index=False, float_format="%.6g")
        print(f"wrote {args.csv}")
    return 0
