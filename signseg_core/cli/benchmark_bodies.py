"""Bodies of ``shape-texture`` and ``backgrounds`` (:mod:`.benchmark_commands` builds the parsers)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from signseg_core.analyses.ablation_benchmarks import AblationGrid, family_members
from signseg_core.analyses.background_challenge import backgrounds_family
from signseg_core.analyses.shape_texture import shape_texture_family
from signseg_core.cli.options import check_args, signs_from_args
from signseg_core.datasets.files import default_dataset_dir
from signseg_core.figures.benchmark_plots import backgrounds_figure, shape_texture_figure
from signseg_core.figures.render import figure_bytes
from signseg_core.store import default_store


def _models(args: argparse.Namespace) -> list[str]:
    names = list(dict.fromkeys([*args.models, *(family_members(args.family) if args.family
                                                else [])]))
    if not names:
        raise ValueError("name at least one model (e.g. efficientnet_lite0) or --family robust")
    return names


def _options(args: argparse.Namespace) -> dict:
    return {"grid": AblationGrid(alphas=args.alphas, signs=signs_from_args(args)),
            "store": None if args.no_store else default_store(),
            "batch_size": args.batch_size, "quiet": args.quiet}


def _write(args: argparse.Namespace, table: pd.DataFrame, fig: go.Figure, skipped) -> None:
    for s in skipped:
        print(f"skipped {s.name}: {s.reason}")
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fmt = out.suffix.lower().lstrip(".")
        if fmt == "html":
            fig.write_html(out, include_plotlyjs=True)
        elif fmt in ("png", "svg", "pdf"):
            out.write_bytes(figure_bytes(fig, fmt))
        else:
            raise ValueError(f"--out must end in .html, .png, .svg or .pdf, got {out.name!r}")


def cmd_shape_texture(args: argparse.Namespace) -> int:
    check_args(args)
    names = _models(args)
    data = args.data or default_dataset_dir("cue-conflict")
    table, skipped = shape_texture_family(names, data, device=args.device, weights=args.weights,
                                          **_options(args))
    with pd.option_context("display.width", 160):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    _write(args, table, shape_texture_figure(table), skipped)
    return 0 if not table.empty else 1


def cmd_backgrounds(args: argparse.Namespace) -> int:
    check_args(args)
    names = _models(args)
    data = args.data or default_dataset_dir("bg_challenge")
    table, skipped = backgrounds_family(names, data, device=args.device, weights=args.weights,
                                        variants=tuple(args.variants), challenge=args.challenge,
                                        **_options(args))
    wide = table.pivot_table(index=["model", "sign", "alpha"], columns="measure", values="value",
                             sort=False).reset_index()
    with pd.option_context("display.width", 200):
        print(wide.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    _write(args, table, backgrounds_figure(table), skipped)
    return 0 if not table.empty else 1
