"""ImageNet-9 and the backgrounds challenge of Xiao et al. (2020), as MadryLab ships them (Fig 17).

Layout (``backgrounds_challenge_data.tar.gz`` of MadryLab/backgrounds_challenge, release "data",
unpacked; its top folder is ``bg_challenge``)::

    bg_challenge/<variant>/val/<class folder>/<name>.JPEG     variant in VARIANTS
    bg_challenge/fg_mask/val/<class folder>/<name>.npy        the challenge's foreground masks

with the nine class folders of :data:`CLASS_FOLDERS` (``00_dog`` ... ``08_fish``; two hold a
space). A class's label is its folder's place in name order (torchvision ``ImageFolder``).

Decisions (the repository's ``eval_model``): the top-1 of the 1000 ImageNet logits, mapped to
nine classes by ``in_to_in9.json`` (:data:`IN9_RANGES`); the 630 ImageNet classes outside the
nine map to -1 and count as wrong. Ties in the top-1 go to the lower ImageNet index.

The challenge (``challenge_eval.py``): each foreground, the pixels of ``original/val/<class>/
<name>.JPEG`` where ``fg_mask/val/<class>/<name>.npy`` is 1, is pasted on every background of
``only_bg_t/val`` (``bg * (1 - mask) + mask * fg`` in [0, 1], before normalisation); the
foreground counts as correct only when every composite is classified as its class. Challenge
accuracy is the fraction of correct foregrounds (the repository prints its complement,
"vulnerable"). Chance is 1/9.
"""

from __future__ import annotations

import hashlib
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
    "CHANCE",
    "CLASS_FOLDERS",
    "DATASET_URL",
    "IN9_RANGES",
    "VARIANTS",
    "Foreground",
    "challenge_foregrounds",
    "find_backgrounds",
    "in9_decisions",
    "in_to_in9",
    "load_mask",
    "variant_images",
]

DATASET_URL = ("https://github.com/MadryLab/backgrounds_challenge/releases/download/data/"
               "backgrounds_challenge_data.tar.gz")

#: The ImageNet-9 test variants of the release (Xiao et al., Table 1).
VARIANTS = ("original", "only_fg", "no_fg", "only_bg_b", "only_bg_t", "mixed_same",
            "mixed_rand", "mixed_next")

#: The nine class folders as the release names them; label i is CLASS_FOLDERS[i].
CLASS_FOLDERS = ("00_dog", "01_bird", "02_wheeled vehicle", "03_reptile", "04_carnivore",
                 "05_insect", "06_musical instrument", "07_primate", "08_fish")

CHANCE = 1.0 / 9.0

#: ``in_to_in9.json`` as inclusive ImageNet index ranges per ImageNet-9 label (370 of 1000).
IN9_RANGES: dict[int, tuple[tuple[int, int], ...]] = {
    0: ((151, 170), (173, 268)),
    1: ((7, 24), (87, 100), (127, 146)),
    2: ((407, 408), (428, 428), (436, 436), (444, 444), (468, 468), (511, 511), (547, 547),
        (555, 555), (561, 561), (565, 565), (569, 569), (573, 573), (586, 586), (603, 603),
        (609, 609), (612, 612), (627, 627), (656, 656), (661, 661), (665, 665), (670, 671),
        (675, 675), (690, 690), (705, 705), (717, 717), (734, 734), (751, 751), (757, 757),
        (791, 791), (802, 803), (817, 817), (820, 820), (829, 829), (847, 847), (864, 864),
        (866, 867), (870, 870), (880, 880)),
    3: ((33, 68),),
    4: ((269, 280), (286, 299), (356, 362), (387, 388)),
    5: ((300, 326),),
    6: ((401, 402), (420, 420), (432, 432), (486, 486), (494, 494), (513, 513), (541, 541),
        (546, 546), (558, 558), (566, 566), (577, 577), (579, 579), (593, 594), (641, 642),
        (683, 684), (687, 687), (699, 699), (776, 776), (822, 822), (875, 875), (881, 881),
        (889, 889)),
    7: ((365, 384),),
    8: ((0, 6), (389, 397)),
}


def in_to_in9() -> np.ndarray:
    """``(1000,)`` int64: the ImageNet-9 label of each ImageNet class, -1 outside the nine."""
    out = np.full(1000, -1, dtype=np.int64)
    for label, ranges in IN9_RANGES.items():
        for lo, hi in ranges:
            out[lo:hi + 1] = label
    return out


def in9_decisions(logits: Tensor) -> Tensor:
    """ImageNet-9 labels (-1: none of the nine) of logits ``(..., 1000)``, as ``(...)`` long."""
    if logits.shape[-1] != 1000:
        raise ValueError(f"ImageNet-9 decisions need 1000 ImageNet logits, got {logits.shape[-1]}")
    table = torch.from_numpy(in_to_in9()).to(logits.device)
    return table[logits.argmax(dim=-1)]  # argmax: the first of tied maxima


def find_backgrounds(folder: str | Path, needed: tuple[str, ...]) -> Path:
    """The folder holding the variant folders: ``folder`` or its ``bg_challenge`` subfolder.

    ``needed`` are the variant (or ``fg_mask``) folders the caller reads; the first one absent is
    a :class:`DatasetMissingError` naming it and the release.
    """
    root = Path(folder).expanduser()
    if (root / "bg_challenge").is_dir():
        root = root / "bg_challenge"
    for name in needed:
        if not (root / name / "val").is_dir():
            raise DatasetMissingError(
                f"ImageNet-9 {name!r} images not found in {root / name / 'val'}: download the "
                f"backgrounds challenge data from {DATASET_URL} and unpack it there, so that "
                f"{root} holds {name}/val/00_dog ... 08_fish")
    return root


def _class_folders(val: Path) -> list[Path]:
    """The nine class folders of a ``val`` folder, checked against :data:`CLASS_FOLDERS`."""
    folders = subfolders(val)
    names = tuple(p.name for p in folders)
    if names != CLASS_FOLDERS:
        extra = [n for n in names if n not in CLASS_FOLDERS]
        lacking = [n for n in CLASS_FOLDERS if n not in names]
        what = f"has the unexpected folder {val / extra[0]}" if extra else \
            f"lacks the class folder(s) {', '.join(lacking)}"
        raise DatasetError(f"{val} {what}; ImageNet-9 has the nine class folders "
                           f"{', '.join(CLASS_FOLDERS)}")
    return folders


def variant_images(root: Path, variant: str) -> tuple[tuple[tuple[Path, int], ...], str]:
    """Every ``(image, label)`` of one variant's ``val`` folder, checked, and its fingerprint."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ImageNet-9 variant {variant!r}; choose from {list(VARIANTS)}")
    val = root / variant / "val"
    items = []
    for label, folder in enumerate(_class_folders(val)):
        files = visible_files(folder)
        if not files:
            raise DatasetError(f"the ImageNet-9 class folder {folder} holds no images")
        for f in files:
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                raise DatasetError(f"{f} is not an image file ({', '.join(IMAGE_SUFFIXES)})")
            items.append((f, label))
    return tuple(items), dataset_fingerprint((p for p, _ in items), root)


@dataclass(frozen=True)
class Foreground:
    """One challenge foreground: its mask (``.npy``), its original image and its label."""

    mask: Path
    image: Path
    label: int


def challenge_foregrounds(root: Path) -> tuple[tuple[Foreground, ...], str]:
    """Every foreground of ``fg_mask/val`` with its original image, checked, and the fingerprint
    of masks and originals. A mask without its ``original/val/<class>/<name>.JPEG`` is a
    :class:`DatasetError` naming both."""
    out = []
    for label, folder in enumerate(_class_folders(root / "fg_mask" / "val")):
        files = visible_files(folder)
        if not files:
            raise DatasetError(f"the foreground mask folder {folder} holds no masks")
        for f in files:
            if f.suffix != ".npy":
                raise DatasetError(f"{f} is not a foreground mask: fg_mask holds <name>.npy files")
            image = root / "original" / "val" / folder.name / (f.stem + ".JPEG")
            if not image.is_file():
                raise DatasetError(f"the foreground mask {f} has no original image {image}")
            out.append(Foreground(f, image, label))
    files = [fg.mask for fg in out] + [fg.image for fg in out]
    return tuple(out), dataset_fingerprint(files, root)


def load_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A foreground mask as bool ``(H, W)``: a 2-D array of 0 and 1 (or bools) of the image's
    ``shape``; anything else is a :class:`DatasetError` naming the file."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read the foreground mask {path} ({exc})") from None
    if arr.ndim != 2 or tuple(arr.shape) != tuple(shape):
        raise DatasetError(f"the foreground mask {path} has shape {arr.shape}, but its image is "
                           f"{shape[0]}x{shape[1]}")
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        raise DatasetError(f"the foreground mask {path} holds values other than 0 and 1")
    return arr.astype(bool)


def mapping_digest() -> str:
    """SHA-256 of the 1000 labels joined by commas: equals that of the publisher's
    ``in_to_in9.json`` read in index order (tests check the transcription against it)."""
    return hashlib.sha256(",".join(map(str, in_to_in9().tolist())).encode()).hexdigest()
