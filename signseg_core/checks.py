"""Argument checks shared by the engine's modules: integers within bounds, paths within a folder."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np


def check_int(name: str, value, *, low: int, high: int | None = None) -> int:
    """``value`` as an int when it is a (Python or NumPy) integer in [``low``, ``high``], else a
    ValueError naming ``name`` (``True``/``False`` are refused: they are ints only by accident).
    ``high`` (None: no upper bound) keeps a typo from becoming an allocation."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        kind = "a positive int" if low == 1 else f"an int >= {low}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be at most {high:,}, got {int(value):,}")
    return int(value)


def is_plain_relative(name: str) -> bool:
    """True when ``name`` is a relative path that stays inside its folder on paper: not empty,
    not absolute (POSIX or Windows, drive letters too), no ``..`` part, no NUL byte."""
    if not name or "\x00" in name:
        return False
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.anchor or ".." in pure.parts:
            return False
    return True


def check_inside(path: str | os.PathLike, folder: str | os.PathLike, *, what: str = "path") -> Path:
    """``path`` resolved (symlinks followed) when it lies inside ``folder`` (also resolved), else a
    ValueError naming ``what``; ``path`` need not exist. Relative paths are taken relative to
    ``folder``."""
    root = Path(folder).expanduser().resolve()
    target = (root / Path(path).expanduser()).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"{what} {str(path)!r} lies outside its folder")
    return target
