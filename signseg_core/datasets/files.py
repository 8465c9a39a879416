"""What the benchmark datasets share: their errors, their file listings, fingerprints, images.

A dataset is read only after its whole layout was checked (every folder and every file name), so
a bad file stops an evaluation before any result is computed or stored. Each refusal is one
sentence naming the file: :class:`DatasetError` for a folder or file that is there but wrong,
:class:`DatasetMissingError` for a dataset that is not there, with where to get it.

A dataset's fingerprint is the SHA-256 of its files' relative paths, sizes and modification times
(nanoseconds), sorted: a renamed, added, removed or rewritten file changes it, reading does not.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from signseg_core import paths
from signseg_core.errors import SignsegError

__all__ = [
    "IMAGE_SUFFIXES",
    "DatasetError",
    "DatasetMissingError",
    "dataset_fingerprint",
    "default_dataset_dir",
    "is_hidden",
    "load_rgb",
    "load_rgb_uint8",
    "subfolders",
    "visible_files",
]

#: File endings read as images, as torchvision's ``ImageFolder`` (both benchmarks load with it)
#: takes them, compared without case.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DatasetError(SignsegError, ValueError):
    """A benchmark dataset is there but not in its publisher's layout; the message names the
    folder or file and what was expected."""


class DatasetMissingError(SignsegError, FileNotFoundError):
    """A benchmark dataset is not where it was looked for; the message names the dataset, the
    folder, and where to download it from."""

    def __str__(self) -> str:  # FileNotFoundError would print "[Errno None] ..."
        return str(self.args[0])


def is_hidden(path: Path) -> bool:
    """Names starting with a dot (``.DS_Store``, ``._x.png`` of macOS archives) are not data."""
    return path.name.startswith(".")


def subfolders(folder: Path) -> list[Path]:
    """The visible subfolders of ``folder``, sorted by name (``ImageFolder``'s class order)."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not is_hidden(p)),
                  key=lambda p: p.name)


def visible_files(folder: Path) -> list[Path]:
    """The visible files of ``folder`` (not recursive), sorted by name; a subfolder inside is a
    :class:`DatasetError` (no benchmark here nests deeper than its class folders)."""
    out = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if is_hidden(path):
            continue
        if path.is_dir():
            raise DatasetError(f"{path} is a folder, but {folder.name} should hold only files")
        out.append(path)
    return out


def dataset_fingerprint(files: Iterable[Path], root: Path) -> str:
    """SHA-256 hex of the files' paths relative to ``root``, sizes and mtimes (ns), sorted."""
    digest = hashlib.sha256()
    for rel, size, mtime in sorted(_stat(p, root) for p in files):
        digest.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def _stat(path: Path, root: Path) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DatasetError(f"cannot read {path} ({exc.strerror or exc})") from None
    return Path(path).relative_to(root).as_posix(), st.st_size, st.st_mtime_ns


def load_rgb_uint8(path: Path) -> np.ndarray:
    """One image file as uint8 ``(H, W, 3)`` RGB; an unreadable file is a :class:`DatasetError`
    naming it (never PIL's traceback)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"cannot read the image {path} ({type(exc).__name__}: {exc})") from None


def load_rgb(paths: Sequence[Path]) -> list[Tensor]:
    """Image files as float32 ``(3, H, W)`` tensors in [0, 1] (``ToTensor``'s scaling: /255)."""
    return [torch.from_numpy(load_rgb_uint8(p)).permute(2, 0, 1).float().div_(255.0)
            for p in paths]


def default_dataset_dir(name: str) -> Path:
    """Where the operator keeps benchmark dataset ``name``: ``<cache>/datasets/<name>``
    (``$SIGNSEG_CACHE_DIR`` moves it); not created, only looked in."""
    return paths.cache_dir() / "datasets" / name
