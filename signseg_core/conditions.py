"""What an ablation condition is, and the one place where its parts are parsed and checked.

A :class:`Condition` names a readout unit, the sign of its input weights to ablate and the
strength ``alpha`` in [0, 1] (paper §3, :mod:`signseg_core.ablation` applies it). The paper's grid
is :data:`DEFAULT_ALPHAS` = 0, 0.1, ..., 1 for both :data:`SIGNS`: 21 conditions per unit, since
``alpha = 0`` is one control whatever the sign. Text from a command line or a URL becomes
strengths through :func:`parse_alphas` and signs through :func:`check_sign`, nowhere else.

No torch here: checking a condition needs none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real

__all__ = [
    "DEFAULT_ALPHAS",
    "MAX_ALPHAS",
    "SIGNS",
    "Condition",
    "check_alpha",
    "check_sign",
    "check_unit",
    "condition_grid",
    "parse_alpha",
    "parse_alphas",
    "parse_sign",
    "parse_unit",
    "parse_units",
    "unique_conditions",
]

SIGNS = ("positive", "negative")
DEFAULT_ALPHAS = tuple(round(0.1 * i, 6) for i in range(11))  # 0.0, 0.1, ..., 1.0 (paper)
_ALPHA_DECIMALS = 6
#: Most strengths one grid may hold: 0:1:0.001 is 1,001; finer grids are a typo, not a request.
MAX_ALPHAS = 1001


def check_unit(unit: int, n_units: int | None = None) -> int:
    """``unit`` as an int >= 0 (and < ``n_units`` when given); ValueError otherwise.

    Integral floats (``373.0``) and numpy integers are accepted; ``True``, ``3.5`` and text are not.
    """
    if isinstance(unit, bool) or not isinstance(unit, Integral):
        if isinstance(unit, Real) and not isinstance(unit, bool) and float(unit).is_integer():
            unit = int(unit)
        else:
            raise ValueError(f"unit must be an integer index, got {unit!r}")
    unit = int(unit)
    if unit < 0 or (n_units is not None and unit >= n_units):
        top = "" if n_units is None else f" to {n_units - 1}"
        raise ValueError(f"unit {unit} is out of range: this readout has units 0{top}")
    return unit


def parse_unit(text: str, n_units: int | None = None) -> int:
    """``"373"`` → 373, checked by :func:`check_unit`; ValueError with one sentence otherwise."""
    try:
        value = int(str(text).strip())
    except ValueError:
        top = "" if n_units is None else f" from 0 to {n_units - 1}"
        raise ValueError(f"unit must be an integer{top}, got {text!r}") from None
    return check_unit(value, n_units)


def parse_units(text: str, n_units: int | None = None) -> tuple[int, ...]:
    """``"0 217, 373"`` → (0, 217, 373), duplicates dropped; each checked by :func:`parse_unit`."""
    items = str(text).replace(",", " ").split()
    if not items:
        raise ValueError("give at least one unit, e.g. 0 217 373")
    return tuple(dict.fromkeys(parse_unit(item, n_units) for item in items))


def parse_sign(text: str) -> str:
    """``" negative"`` → "negative", checked by :func:`check_sign`."""
    return check_sign(str(text).strip())


def check_sign(sign: str) -> str:
    """``sign`` if it is one of :data:`SIGNS`; ValueError naming the choices otherwise."""
    if sign not in SIGNS:
        raise ValueError(f"unknown sign {sign!r}; choose from {list(SIGNS)}")
    return sign


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float in [0, 1]; ValueError for anything else (NaN, inf, bool, text)."""
    if isinstance(alpha, bool) or not isinstance(alpha, Real):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    value = float(alpha)
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"alpha must be in [0, 1] (0 = intact, 1 = all removed), got {alpha!r}")
    return value


def parse_alpha(text: str, *, choices: Sequence[float] | None = None) -> float:
    """``"0.3"`` → 0.3, checked by :func:`check_alpha` and rounded like a :class:`Condition`;
    with ``choices`` (e.g. :data:`DEFAULT_ALPHAS`) it must also be one of them."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError(f"alpha must be a number in [0, 1], got {text!r}") from None
    value = round(check_alpha(value), _ALPHA_DECIMALS)
    if choices is not None and value not in choices:
        raise ValueError(f"alpha must be one of {[f'{a:g}' for a in choices]}, got {text!r}")
    return value


def parse_alphas(text: str) -> tuple[float, ...]:
    """Ablation strengths from text: ``"0:1:0.1"`` (inclusive start:stop:step) or ``"0,0.5,1"``.

    Every number must be finite; every value is checked with :func:`check_alpha` and rounded to 6
    decimals (the precision of a :class:`Condition`); duplicates keep their first place. A range
    must rise (``stop >= start``, ``step > 0``, both ends in [0, 1]); a range or a list holds at
    most :data:`MAX_ALPHAS` values. Raises ``ValueError`` with one sentence for anything else,
    before anything is allocated.
    """
    text = str(text).strip()
    shown = text if len(text) <= 40 else text[:37] + "..."
    form = f"alphas must look like 0:1:0.1 or 0,0.5,1 (each in [0, 1]), got {shown!r}"
    items = text.split(":") if ":" in text else text.split(",")
    if len(items) > MAX_ALPHAS:
        raise ValueError(f"{form}: that is more than {MAX_ALPHAS} strengths")
    try:
        numbers = [float(x) for x in items]
    except ValueError:
        raise ValueError(form) from None
    if ":" in text and len(numbers) != 3:
        raise ValueError(f"{form}: a range is start:stop:step")
    if not all(math.isfinite(x) for x in numbers):
        raise ValueError(f"{form}: every number must be finite")
    if ":" in text:
        start, stop, step = numbers
        for end in (start, stop):
            check_alpha(end)
        if not step > 0 or not stop >= start:
            raise ValueError(f"{form}: the range must rise by a positive step")
        n = (stop - start) / step
        if not n < MAX_ALPHAS:
            raise ValueError(f"{form}: that is more than {MAX_ALPHAS} strengths")
        # the last value never passes stop (a step that does not divide the range stops short)
        numbers = [start + i * step for i in range(math.floor(n + 1e-9) + 1)]
    alphas = [check_alpha(round(v, _ALPHA_DECIMALS)) for v in numbers]
    return tuple(dict.fromkeys(alphas))


@dataclass(frozen=True)
class Condition:
    """One ablation condition: which readout unit, which sign, how much of it to remove.

    Parameters
    ----------
    unit : int >= 0
        Index of the readout unit (row of the readout weight).
    sign : {"positive", "negative"}
        Which of the unit's input weights to ablate.
    alpha : float in [0, 1]
        Ablation strength; rounded to 6 decimals so ``0.1 + 0.2`` and ``0.3`` are the same key.
        ``alpha = 0`` is the intact control, whatever ``sign`` says (see :attr:`key`).
    """

    unit: int
    sign: str
    alpha: float

    def __post_init__(self) -> None:
        if isinstance(self.unit, bool) or not isinstance(self.unit, Integral) or self.unit < 0:
            raise ValueError(f"unit must be an int >= 0, got {self.unit!r}")  # no floats here
        check_sign(self.sign)
        alpha = round(check_alpha(self.alpha), _ALPHA_DECIMALS)
        object.__setattr__(self, "unit", int(self.unit))
        object.__setattr__(self, "alpha", alpha + 0.0)  # + 0.0 turns -0.0 into 0.0

    @property
    def is_control(self) -> bool:
        """True for ``alpha = 0``: nothing is removed, so both signs give the same readout."""
        return self.alpha == 0.0

    @property
    def key(self) -> tuple[int, str, float]:
        """Hashable identity of what the condition computes: ``(unit, "control", 0.0)`` for a
        control of either sign, else ``(unit, sign, alpha)``. Use it to dedupe and as cache key."""
        if self.is_control:
            return (self.unit, "control", 0.0)
        return (self.unit, self.sign, self.alpha)

    @property
    def label(self) -> str:
        """Short text for plots: ``"control"``, ``"pos 0.3"``, ``"neg 1"``."""
        return "control" if self.is_control else f"{self.sign[:3]} {self.alpha:g}"


def unique_conditions(conditions: Iterable[Condition]) -> list[Condition]:
    """Conditions with duplicate :attr:`Condition.key` dropped, first occurrence kept, in order."""
    seen: set = set()
    out = []
    for cond in conditions:
        if cond.key not in seen:
            seen.add(cond.key)
            out.append(cond)
    return out


def condition_grid(
    units: Iterable[int],
    *,
    signs: Sequence[str] = SIGNS,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    dedupe_controls: bool = True,
) -> list[Condition]:
    """Every (unit, sign, alpha) combination, ordered unit-major, then sign, then alpha.

    With ``dedupe_controls`` (default) the ``alpha = 0`` control appears once per unit (the first
    sign's), so the default grid has 21 conditions per unit: control + 2 signs x 10 strengths.
    With ``dedupe_controls=False`` it is the plain cartesian product.
    """
    grid = [Condition(u, s, a) for u in units for s in signs for a in alphas]
    return unique_conditions(grid) if dedupe_controls else grid
