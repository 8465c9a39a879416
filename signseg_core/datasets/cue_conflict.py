"""The cue-conflict images of Geirhos et al. (ICLR 2019), as model-vs-human ships them (paper Fig 16).

Layout (``cue-conflict.tar.gz`` of model-vs-human's release v0.1, unpacked)::

    cue-conflict/airplane/airplane1-bicycle2.png
    cue-conflict/airplane/airplane1-bird1.png
    ...                                          16 folders, one per shape category

The folder names the shape category; the file name ``<shape><n>-<texture><n>.png`` carries the
texture category after the dash (model-vs-human's ``ShapeBias.get_texture_category``: the part
after the last ``_`` and the last ``-``, extension and digits removed). The shape part of the name
must agree with the folder, or the file is refused.

Decisions (model-vs-human's ``ImageNetProbabilitiesTo16ClassesMapping``): softmax over the 1000
ImageNet logits, the **mean** of the probabilities over each category's ImageNet indices
(``HumanCategories.<category>_indices``), the category with the largest mean. Here the mean is
taken as ``logsumexp(logits[indices]) - log(len(indices))`` in float64, the log of the same mean
times the image's softmax normaliser: the same order, without underflow. Exact ties go to the
category later in alphabetical order, as the benchmark's flipped ascending ``argsort`` gives;
whether two means tie exactly depends on rounding (the float mean of 109 equal probabilities is
not exactly one of them), so only degenerate inputs such as constant logits may be decided
differently from the benchmark's float32 arithmetic.

Shape bias (model-vs-human's ``ShapeBias.analysis``): images whose shape and texture categories
agree carry no conflict and are left out of both counts; ``shape accuracy`` and ``texture
accuracy`` are the conflict images decided as their shape (texture) category over **all** images
(the benchmark divides by ``len(df)``), and ``shape bias = shape / (shape + texture)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from signseg_core.datasets.files import (
    IMAGE_SUFFIXES,
    DatasetError,
    DatasetMissingError,
    dataset_fingerprint,
    subfolders,
    visible_files,
)

__all__ = [
    "CATEGORIES",
    "CATEGORY_INDICES",
    "DATASET_URL",
    "CueConflictImage",
    "category_decisions",
    "category_scores",
    "cue_conflict_images",
    "find_cue_conflict",
    "parse_cue_conflict_name",
    "shape_texture_counts",
]

DATASET_URL = "https://github.com/bethgelab/model-vs-human/releases/download/v0.1/cue-conflict.tar.gz"

#: The 16 categories in model-vs-human's order (sorted by name): decision index i is CATEGORIES[i].
CATEGORIES = ("airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat", "chair",
              "clock", "dog", "elephant", "keyboard", "knife", "oven", "truck")

_DOG = (tuple(range(152, 192)) + tuple(range(193, 204)) + tuple(range(205, 227))
        + tuple(range(228, 242)) + tuple(range(243, 251)) + tuple(range(252, 258))
        + (259,) + tuple(range(261, 264)) + tuple(range(265, 269)))
_BIRD = ((8,) + tuple(range(10, 17)) + (18, 19, 20) + tuple(range(22, 25)) + (80, 81, 82, 83)
         + tuple(range(87, 97)) + (98, 99, 100) + tuple(range(127, 134))
         + tuple(range(135, 146)))

#: ImageNet indices of each category: model-vs-human's ``HumanCategories.<category>_indices``.
CATEGORY_INDICES: dict[str, tuple[int, ...]] = {
    "airplane": (404,), "bear": (294, 295, 296, 297), "bicycle": (444, 671), "bird": _BIRD,
    "boat": (472, 554, 625, 814, 914), "bottle": (440, 720, 737, 898, 899, 901, 907),
    "car": (436, 511, 817), "cat": (281, 282, 283, 284, 285, 286),
    "chair": (423, 559, 765, 857), "clock": (409, 530, 892), "dog": _DOG,
    "elephant": (385, 386), "keyboard": (508, 878), "knife": (499,), "oven": (766,),
    "truck": (555, 569, 656, 675, 717, 734, 864, 867),
}

_NAME = re.compile(r"^(?:.*_)?([a-z]+)\d+-([a-z]+)\d+$")
_EXAMPLE = "<shape><n>-<texture><n>.png such as airplane1-bicycle2.png"


@dataclass(frozen=True)
class CueConflictImage:
    """One stimulus: its file, shape category (its folder) and texture category (its name)."""

    path: Path
    shape: str
    texture: str

    @property
    def conflict(self) -> bool:
        """False when shape and texture agree (e.g. ``bird3-bird2.png``): no cue conflict."""
        return self.shape != self.texture


def parse_cue_conflict_name(name: str) -> tuple[str, str]:
    """``"airplane1-bicycle2.png"`` → ``("airplane", "bicycle")``: the shape and texture
    categories a cue-conflict file name carries (a prefix ending in ``_`` is allowed, as in
    model-vs-human's result files). A name that does not parse, or names a category outside
    :data:`CATEGORIES`, is a :class:`DatasetError` quoting it."""
    stem, suffix = Path(name).stem, Path(name).suffix.lower()
    match = _NAME.match(stem)
    if suffix not in IMAGE_SUFFIXES or match is None:
        raise DatasetError(f"cue-conflict file name {name!r} does not parse: expected {_EXAMPLE}")
    shape, texture = match.groups()
    for role, cat in (("shape", shape), ("texture", texture)):
        if cat not in CATEGORIES:
            raise DatasetError(f"cue-conflict file name {name!r} names the {role} {cat!r}, "
                               f"which is not one of the 16 categories {', '.join(CATEGORIES)}")
    return shape, texture


def find_cue_conflict(folder: str | Path) -> Path:
    """The folder holding the 16 category folders: ``folder`` itself, or its ``cue-conflict``
    subfolder (the archive's top folder) when it has one; else :class:`DatasetMissingError`."""
    path = Path(folder).expanduser()
    if (path / "cue-conflict").is_dir():
        path = path / "cue-conflict"
    if not path.is_dir() or not any(p.name in CATEGORIES for p in path.iterdir()):
        raise DatasetMissingError(
            f"cue-conflict images not found in {path}: download model-vs-human's cue-conflict "
            f"set from {DATASET_URL} and unpack it there, so that it holds the 16 category "
            f"folders ({CATEGORIES[0]}, {CATEGORIES[1]}, ..., {CATEGORIES[-1]})")
    return path


def cue_conflict_images(folder: str | Path) -> tuple[tuple[CueConflictImage, ...], str]:
    """Every stimulus of a cue-conflict folder, checked, and the folder's fingerprint.

    Returns
    -------
    images : tuple of CueConflictImage, sorted by (category folder, file name)
    fingerprint : str, :func:`~signseg_core.datasets.files.dataset_fingerprint` of the files

    Raises
    ------
    DatasetMissingError : no cue-conflict folder there.
    DatasetError : a folder other than the 16 categories, a category folder missing or empty, a
        file whose name does not parse or whose shape disagrees with its folder.
    """
    root = find_cue_conflict(folder)
    folders = subfolders(root)
    names = [p.name for p in folders]
    for p in folders:
        if p.name not in CATEGORIES:
            raise DatasetError(f"{p} is not a cue-conflict category folder; the set has one "
                               f"folder per category: {', '.join(CATEGORIES)}")
    missing = [c for c in CATEGORIES if c not in names]
    if missing:
        raise DatasetError(f"{root} lacks the cue-conflict category folder(s) "
                           f"{', '.join(missing)}: unpack the whole set from {DATASET_URL}")
    images = []
    for p in folders:
        files = visible_files(p)
        if not files:
            raise DatasetError(f"the cue-conflict category folder {p} holds no images")
        for f in files:
            shape, texture = parse_cue_conflict_name(f.name)
            if shape != p.name:
                raise DatasetError(f"{f} names the shape {shape!r} but lies in the folder "
                                   f"{p.name!r}; each file belongs in its shape's folder")
            images.append(CueConflictImage(f, shape, texture))
    stray = [f for f in root.iterdir() if f.is_file() and not f.name.startswith(".")]
    if stray:
        raise DatasetError(f"{stray[0]} lies beside the category folders; every cue-conflict "
                           "image belongs in its shape's folder")
    return tuple(images), dataset_fingerprint((im.path for im in images), root)


def category_scores(logits: Tensor) -> Tensor:
    """Log of the mean softmax probability of each category, up to the image's normaliser.

    Parameters
    ----------
    logits : Tensor (..., 1000), pre-softmax ImageNet logits

    Returns
    -------
    Tensor (..., 16), float64: ``logsumexp(logits[..., idx_c]) - log(len(idx_c))`` per category
        of :data:`CATEGORIES`; its argmax is the benchmark's decision.
    """
    if logits.shape[-1] != 1000:
        raise ValueError(f"cue-conflict decisions need 1000 ImageNet logits, got {logits.shape[-1]}")
    x = logits.double()
    return torch.stack([
        torch.logsumexp(x[..., list(CATEGORY_INDICES[c])], dim=-1)
        - math.log(len(CATEGORY_INDICES[c])) for c in CATEGORIES], dim=-1)


def category_decisions(logits: Tensor) -> Tensor:
    """The decided category index (into :data:`CATEGORIES`) of each image, ``(...)`` long.

    Ties go to the later category (the benchmark flips an ascending argsort): argmax of the
    scores reversed along the category axis, mapped back.
    """
    scores = category_scores(logits)
    return (len(CATEGORIES) - 1) - scores.flip(-1).argmax(dim=-1)


def shape_texture_counts(decisions: np.ndarray, images: Sequence[CueConflictImage]) -> dict:
    """Shape and texture hits of decisions ``(N, C)`` (category indices, one column per
    condition) on ``images`` (length N), as arrays of length C.

    Returns ``{"n_images": N, "n_conflict": int, "shape_hits": (C,), "texture_hits": (C,)}``;
    images without a conflict count in ``n_images`` only (the benchmark's denominator).
    """
    decisions = np.asarray(decisions)
    if decisions.ndim != 2 or decisions.shape[0] != len(images):
        raise ValueError(f"decisions must be (images, conditions) with {len(images)} rows, got "
                         f"shape {decisions.shape}")
    index = {c: i for i, c in enumerate(CATEGORIES)}
    shape = np.array([index[im.shape] for im in images], dtype=np.int64)[:, None]
    texture = np.array([index[im.texture] for im in images], dtype=np.int64)[:, None]
    conflict = np.array([im.conflict for im in images], dtype=bool)[:, None]
    return {"n_images": len(images), "n_conflict": int(conflict.sum()),
            "shape_hits": ((decisions == shape) & conflict).sum(axis=0),
            "texture_hits": ((decisions == texture) & conflict).sum(axis=0)}
