"""``python -m signseg_core COMMAND``: the engine from a terminal.

Commands: ``models`` (the zoo and whether each model's weights are here), ``dale MODEL``
(per-layer Dale index table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import SignsegError


def _cmd_models(args: argparse.Namespace) -> int:
    import pandas as pd

    from .registry import list_models

    table = pd.DataFrame(list_models())
    if not args.all:
        table = table[table.family != "test"]
    table["weights"] = table.weights_present.map({True: "present", False: "missing"})
    cols = ["name", "family", "input_size", "top1", "weights", "weights_path"]
    print(table[cols].to_string(index=False))
    return 0


def _cmd_dale(args: argparse.Namespace) -> int:
    from .registry import load_model
    from .signs import compare_trained_untrained, layer_summary

    model = load_model(args.model, device=args.device, weights=args.weights,
                       untrained=args.untrained, seed=args.seed)
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
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m signseg_core", description=__doc__.split("\n")[0])
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
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_dale)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SignsegError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
