"""ImageNet class names and the paper's default units.

The names come from torchvision's weights metadata, which ships with torchvision: no download.
"""

from __future__ import annotations

from functools import lru_cache

#: The paper's default units: the ten Imagenette classes plus macaque (ImageNet indices).
#: The paper's appendix list pairs some names with the wrong indices; these are the right ones.
DEFAULT_UNITS: tuple[int, ...] = (0, 217, 482, 491, 497, 566, 569, 571, 574, 701, 373)

NUM_CLASSES = 1000


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order (torchvision's spelling)."""
    from torchvision.models import ResNet50_Weights

    names = tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    if len(names) != NUM_CLASSES:  # pragma: no cover - a torchvision packaging fault
        raise RuntimeError(f"expected {NUM_CLASSES} ImageNet classes, torchvision has {len(names)}")
    return names


def check_unit(unit: int, n_units: int = NUM_CLASSES) -> int:
    """Return ``unit`` as an int if it indexes a readout of ``n_units`` units, else raise."""
    if isinstance(unit, bool) or not isinstance(unit, int):
        try:
            as_int = int(unit)
        except (TypeError, ValueError):
            raise ValueError(f"unit must be an integer index, got {unit!r}") from None
        if as_int != unit:
            raise ValueError(f"unit must be an integer index, got {unit!r}")
        unit = as_int
    if not 0 <= unit < n_units:
        raise ValueError(f"unit {unit} is out of range: this readout has units 0 to {n_units - 1}")
    return unit
