"""Bounds of the generators' options (:func:`~signseg_core.generators.catalog.make_generator`).

A typo such as ``size=20000`` (168 GB per batch) is one sentence, not an allocation: every option
a generator takes is checked here (through
:func:`~signseg_core.generators.catalog.check_generator_options`) before anything is built. Each
check returns the value unchanged (so fingerprints stay as they were), grids as a tuple of ints.
"""

from __future__ import annotations

from signseg_core.checks import check_int

#: The largest image side a weight-free generator makes (px): 4x the paper's 256.
MAX_IMAGE_SIZE = 1024
#: The most cycles per image of the Fourier generator (d = 3 * ~pi * MAX_FREQ**2 = 38,613).
MAX_FREQ = 64
#: The steepest spectral decay (1 / |f|**decay) and the most grids of the pixel pyramid.
MAX_DECAY = 8.0
MAX_GRIDS = 8


def check_decay(decay: float) -> float:
    """``decay`` when it is a number in [0, :data:`MAX_DECAY`]; ValueError otherwise (NaN, inf,
    text)."""
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) \
            or not 0.0 <= decay <= MAX_DECAY:
        raise ValueError(f"decay must be a number in [0, {MAX_DECAY:g}]; got {decay!r}")
    return decay


def check_grids(grids) -> tuple[int, ...]:
    """``grids`` as 1 to :data:`MAX_GRIDS` ints in [1, :data:`MAX_IMAGE_SIZE`]; a comma text
    (``"4,8,16"``, as the command line gives it) is split first."""
    if isinstance(grids, str):
        grids = [g.strip() for g in grids.split(",")]
        try:
            grids = [int(g) for g in grids]
        except ValueError:
            raise ValueError(f"grids must be integers like 4,8,16; got {grids!r}") from None
    elif isinstance(grids, (int, float)):
        grids = [grids]
    grids = tuple(check_int("grid", g, low=1, high=MAX_IMAGE_SIZE) for g in grids)
    if not 1 <= len(grids) <= MAX_GRIDS:
        raise ValueError(f"grids must hold 1 to {MAX_GRIDS} sizes; got {len(grids)}")
    return grids


def check_truncation(value: float) -> float:
    """BigGAN's ``truncation`` when it is a number in (0, 1]; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"truncation must be in (0, 1]; got {value!r}")
    return value


def check_resolution(value: int) -> int:
    """BigGAN's ``resolution`` when it is 128, 256 or 512; ValueError otherwise."""
    if isinstance(value, bool) or value not in (128, 256, 512):
        raise ValueError(f"resolution must be 128, 256 or 512; got {value!r}")
    return value


#: Each option's check: the value as the generator takes it, or a ValueError naming it.
OPTION_CHECKS = {
    "size": lambda v: check_int("size", v, low=1, high=MAX_IMAGE_SIZE),
    "max_freq": lambda v: check_int("max_freq", v, low=1, high=MAX_FREQ),
    "decay": check_decay, "grids": check_grids, "truncation": check_truncation,
    "resolution": check_resolution,
}
