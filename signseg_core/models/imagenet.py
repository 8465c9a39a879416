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
    from torchvision.models import ResNet50_Weights  # deferred: torchvision takes ~1 s to import

    names = tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    if len(names) != NUM_CLASSES:  # pragma: no cover - a torchvision packaging fault
        raise RuntimeError(f"expected {NUM_CLASSES} ImageNet classes, torchvision has {len(names)}")
    return names

