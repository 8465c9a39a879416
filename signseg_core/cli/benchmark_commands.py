"""``shape-texture`` and ``backgrounds``: the benchmarks of paper Figs 16 and 17 under
whole-readout ablation, from a terminal. The bodies live in :mod:`.benchmark_bodies`, imported
when a command runs."""

from __future__ import annotations

import argparse

from signseg_core.cli.options import alphas_arg, command
from signseg_core.conditions import DEFAULT_ALPHAS
from signseg_core.datasets.backgrounds import VARIANTS


def _common(p: argparse.ArgumentParser, data_help: str) -> None:
    """The options both benchmark commands take."""
    p.add_argument("models", nargs="*", help="zoo models with a 1000-way readout (see models)")
    p.add_argument("--family", choices=("robust",),
                   help="add a family's members: robust = resnet50 and the L-inf eps series; "
                        "members without weights here are skipped, each with its reason")
    p.add_argument("--weights", help="a checkpoint to load instead of the model's own weights "
                                     "(one model only)")
    p.add_argument("--data", metavar="FOLDER", help=data_help)
    p.add_argument("--alphas", type=alphas_arg, default=DEFAULT_ALPHAS,
                   help="ablation strengths: start:stop:step (inclusive) or a comma list")
    p.add_argument("--sign", choices=("positive", "negative", "both"), default="both")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32, help="images per trunk pass")
    p.add_argument("--csv", help="write the table to this CSV file")
    p.add_argument("--out", help="write the figure: .html, .png, .svg or .pdf")
    p.add_argument("--no-store", action="store_true",
                   help="compute without reading or filling the result store")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_benchmarks_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``shape-texture`` and ``backgrounds`` to ``sub``."""
    p = sub.add_parser(
        "shape-texture",
        help="Fig 16: shape/texture accuracy and shape bias on cue-conflict vs ablation strength")
    _common(p, "the cue-conflict folder of model-vs-human (default: <cache>/datasets/"
               "cue-conflict)")
    p.set_defaults(func=command("benchmark_bodies", "cmd_shape_texture"))

    p = sub.add_parser(
        "backgrounds",
        help="Fig 17: ImageNet-9 accuracy per variant, BG-gap and the backgrounds challenge vs "
             "ablation strength")
    _common(p, "the folder holding the ImageNet-9 variant folders, bg_challenge of the release "
               "(default: <cache>/datasets/bg_challenge)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                   help="ImageNet-9 variants to score (default: all eight)")
    p.add_argument("--challenge", action="store_true",
                   help="also the challenge: every foreground on every only_bg_t background "
                        "(up to 4050 x 4050 composites per model: a GPU's work)")
    p.set_defaults(func=command("benchmark_bodies", "cmd_backgrounds"))
