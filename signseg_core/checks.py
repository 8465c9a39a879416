"""Argument checks shared by the engine's modules."""

from __future__ import annotations

import numpy as np


def check_int(name: str, value, *, low: int) -> int:
    """``value`` as an int when it is a (Python or NumPy) integer >= ``low``, else a ValueError
    naming ``name`` (``True``/``False`` are refused: they are ints only by accident)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        kind = "a positive int" if low == 1 else f"an int >= {low}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return int(value)
