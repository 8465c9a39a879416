"""Command-line options shared by several commands: ablation strengths, signs, the evolution budget.

``visualize``, ``sweep`` and ``neurons ablate`` take the same options and turn them into the
engine's nouns here, once.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from signseg_core.conditions import DEFAULT_ALPHAS, SIGNS, parse_alphas
from signseg_core.optimize.settings import COVARIANCE_NAMES, PRECISIONS, VisualizeSettings


def alphas_arg(text: str) -> tuple[float, ...]:
    """argparse's ``type`` for ``--alphas``: :func:`~signseg_core.conditions.parse_alphas`, whose
    sentence argparse then prints (it hides a plain ValueError's)."""
    try:
        return parse_alphas(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def generator_options(items: list[str]) -> dict:
    """``["size=128", "decay=1.5"]`` → ``{"size": 128, "decay": 1.5}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"generator option must look like KEY=VALUE, got {item!r}")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def signs_from_args(args: argparse.Namespace) -> tuple[str, ...]:
    return SIGNS if args.sign == "both" else (args.sign,)


def settings_from_args(args: argparse.Namespace):
    """The :class:`~signseg_core.optimize.settings.VisualizeSettings` of
    :func:`add_evolution_args`."""
    return VisualizeSettings(
        generator=args.generator, generations=args.generations, restarts=args.restarts,
        seed=args.seed, precision=args.precision, covariance=args.covariance,
        generator_options=tuple(sorted(generator_options(args.generator_option).items())))


def add_evolution_args(p: argparse.ArgumentParser) -> None:
    """The options ``visualize``, ``sweep`` and ``neurons ablate`` share: signs, alphas, the
    evolution budget and the optimiser (``--covariance``)."""
    p.add_argument("--sign", choices=("positive", "negative", "both"), default="both")
    p.add_argument("--alphas", type=alphas_arg, default=DEFAULT_ALPHAS,
                   help="ablation strengths: start:stop:step (inclusive) or a comma list")
    p.add_argument("--restarts", type=int, default=10)
    p.add_argument("--generations", type=int, default=100)
    p.add_argument("--generator", default="fourier")
    p.add_argument("--generator-option", action="append", default=[], metavar="KEY=VALUE",
                   help="generator option, e.g. size=128 (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="bf16/fp16: half-precision autocast on CUDA (fp32 on a CPU)")
    p.add_argument("--covariance", choices=tuple(COVARIANCE_NAMES), default="none",
                   help="the optimiser: " + "; ".join(
                       f"{mode}{' (default)' * (mode == 'none')}: {words}"
                       for mode, words in COVARIANCE_NAMES.items()))


def command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A command body named by module and function, imported when it first runs.

    ``command("commands", "cmd_sweep")`` stands for :func:`signseg_core.cli.commands.cmd_sweep`
    (and carries that ``__name__``): the parser names every command without importing what the
    commands need.
    """
    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"signseg_core.cli.{module}"), name)(args)

    run.__name__ = run.__qualname__ = name
    return run
