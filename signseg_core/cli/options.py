"""Command-line options shared by several commands: ablation strengths, signs, the evolution budget.

``visualize``, ``sweep`` and ``neurons ablate`` take the same options and turn them into the
engine's nouns here, once.
"""

from __future__ import annotations

import argparse
import importlib
import math
from collections.abc import Callable

import torch

from signseg_core.checks import check_int
from signseg_core.conditions import DEFAULT_ALPHAS, SIGNS, parse_alphas
from signseg_core.generators.catalog import check_generator_options
from signseg_core.optimize.settings import COVARIANCE_NAMES, PRECISIONS, VisualizeSettings

#: The largest ``--batch-size`` taken: a 4096-image batch of 224-px float32 images is 2.5 GB.
MAX_BATCH_SIZE = 4096


def alphas_arg(text: str) -> tuple[float, ...]:
    """argparse's ``type`` for ``--alphas``: :func:`~signseg_core.conditions.parse_alphas`, whose
    sentence argparse then prints (it hides a plain ValueError's)."""
    try:
        return parse_alphas(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def generator_options(items: list[str]) -> dict:
    """``["size=128", "decay=1.5"]`` → ``{"size": 128, "decay": 1.5}``; values that are neither
    ints nor finite floats stay text (the generator's own check then names them)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ValueError(f"generator option must look like KEY=VALUE, got {item!r}")
        for cast in (int, float):
            try:
                number = cast(value)
            except ValueError:
                continue
            if isinstance(number, int) or math.isfinite(number):
                out[key] = number
                break
        else:
            out[key] = value
    return out


def available_devices() -> list[str]:
    """Device names this machine offers torch: ``auto``, ``cpu``, and ``cuda``/``cuda:N`` or
    ``mps`` where present."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def check_device(name: str) -> str:
    """``name`` when this machine offers it (:func:`available_devices`), else a ValueError naming
    the choices: ``tpu``, ``meta`` or ``cuda`` without a GPU are one sentence, not a traceback."""
    choices = available_devices()
    if str(name).strip().lower() not in choices:
        raise ValueError(f"device {name!r} is not available on this machine; choose from "
                         f"{', '.join(choices)}")
    return str(name).strip().lower()


def check_args(args: argparse.Namespace) -> None:
    """Check the options several commands share, before a command loads anything: the device,
    ``--batch-size`` (1 to :data:`MAX_BATCH_SIZE`) and the generator options (bounded by
    :mod:`signseg_core.generators.options`). Raises ValueError with one sentence."""
    elsewhere = getattr(args, "dry_run", False) or getattr(args, "cluster", False) is not False
    if isinstance(getattr(args, "device", None), str) and not elsewhere:
        args.device = check_device(args.device)  # a plan or a cluster's workers: not this machine
    elif elsewhere and args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        raise ValueError(f"device {args.device!r} for a plan or a cluster must be cpu or cuda")
    if getattr(args, "batch_size", None) is not None:
        check_int("--batch-size", args.batch_size, low=1, high=MAX_BATCH_SIZE)
    if getattr(args, "generator_option", None):
        options = generator_options(args.generator_option)
        for name in getattr(args, "generators", None) or [args.generator]:
            check_generator_options(name, options)


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
