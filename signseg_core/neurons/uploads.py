"""Neuron data uploaded to the dashboard, written into a folder of the server's own.

A visitor's responses file and images (one or more zip files, or image files) become
``<cache>/uploads/<digest>/``: ``responses.csv`` or ``responses.npz`` and ``images/``. Nothing the
visitor sends chooses a path on the server: an image file keeps only its base name; a zip member
must be a plain relative path (no ``..``, not absolute) and only image files are taken from it;
an archive may not unpack to more than ``max_bytes`` or :data:`MAX_UPLOAD_FILES` files (counted
as they are written, not as the archive claims); every image is decoded in full within
:mod:`~signseg_core.neurons.response_files`'s size limits. The folder appears at once (written
beside it, then renamed), so a half-written upload is never read, and only the
:data:`KEEP_UPLOADS` most recently used are kept. Checking the responses against the images is
:func:`~signseg_core.neurons.data.load_neuron_data`'s, as for any file.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import time
import uuid
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from signseg_core.checks import is_plain_relative
from signseg_core.errors import SignsegError
from signseg_core.neurons.response_files import image_problem
from signseg_core.paths import cache_dir

__all__ = ["IMAGE_SUFFIXES", "KEEP_UPLOADS", "MAX_UPLOAD_BYTES", "MAX_UPLOAD_FILES",
           "UploadError", "save_upload"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
RESPONSE_SUFFIXES = (".csv", ".npz")
#: Most image files one upload may hold, and most bytes its archives may unpack to by default.
MAX_UPLOAD_FILES = 20_000
MAX_UPLOAD_BYTES = 2 << 30
#: Upload folders kept; older ones are removed when a new one is written.
KEEP_UPLOADS = 32
_SHOWN = 10
_CHUNK = 1 << 20


class UploadError(SignsegError, ValueError):
    """An upload cannot be used; the message names the uploaded file (the visitor's own)."""


class _Budget:
    """Files and bytes written so far, against the upload's limits."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.files, self.bytes = max_bytes, 0, 0

    def add_file(self, source: str) -> None:
        self.files += 1
        if self.files > MAX_UPLOAD_FILES:
            raise UploadError(f"{source}: more than {MAX_UPLOAD_FILES:,} image files in one "
                              "upload")

    def add_bytes(self, n: int, source: str) -> None:
        self.bytes += n
        if self.bytes > self.max_bytes:
            raise UploadError(f"{source}: the images unpack to more than {self.max_bytes:,} "
                              "bytes, more than one upload may hold")


def save_upload(responses: tuple[str, bytes], images: Sequence[tuple[str, bytes]], *,
                root: str | Path | None = None,
                max_bytes: int = MAX_UPLOAD_BYTES) -> tuple[Path, Path]:
    """Write an upload into its own folder; ``(responses file, image folder)``.

    Parameters
    ----------
    responses : ``(file name, content)`` of a ``.csv`` or ``.npz`` (see
        :mod:`signseg_core.neurons.data`).
    images : ``(file name, content)`` of image files (stored under their base name) and of zip
        files (unpacked, paths kept: the responses name images relative to the zip's root).
    root : where upload folders live; default ``<cache>/uploads``.
    max_bytes : most bytes the images may take once unpacked.

    The same upload gives the same folder (named by a digest of every name and byte), so a
    second identical upload reuses it. Raises :class:`UploadError` naming the bad file.
    """
    name, content = responses
    suffix = PurePosixPath(str(name).replace("\\", "/")).suffix.lower()
    if suffix not in RESPONSE_SUFFIXES:
        raise UploadError(f"{name}: the responses must be a .csv or .npz file")
    if not images:
        raise UploadError("no images were uploaded: add a zip of the image folder, or the "
                          "image files")
    root = Path(root) if root is not None else cache_dir() / "uploads"
    digest = _digest(suffix, content, images)
    final = root / digest
    if (final / f"responses{suffix}").is_file():
        os.utime(final)  # recently used: kept by the pruning
        return final / f"responses{suffix}", final / "images"
    tmp = root / f".{digest}-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "images").mkdir(parents=True)
        (tmp / f"responses{suffix}").write_bytes(content)
        _write_images(images, tmp / "images", _Budget(max_bytes))
        try:
            os.replace(tmp, final)
        except OSError:  # another session wrote the same upload first
            if not (final / f"responses{suffix}").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune_uploads(root, keep=KEEP_UPLOADS)
    return final / f"responses{suffix}", final / "images"


def prune_uploads(root: str | Path, *, keep: int = KEEP_UPLOADS) -> None:
    """Remove all but the ``keep`` most recently used upload folders of ``root``, and temporary
    folders over an hour old (left by a killed writer)."""
    root = Path(root)
    if not root.is_dir():
        return
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    folders.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    stale = [p for p in root.iterdir() if p.name.startswith(".")
             and p.stat().st_mtime < time.time() - 3600]
    for folder in folders[keep:] + stale:
        shutil.rmtree(folder, ignore_errors=True)


def _digest(suffix: str, content: bytes, images: Sequence[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256(suffix.encode() + b"\0" + content)
    for name, data in images:
        digest.update(hashlib.sha256(str(name).encode() + b"\0" + data).digest())
    return digest.hexdigest()[:32]


def _write_images(images: Sequence[tuple[str, bytes]], folder: Path, budget: _Budget) -> None:
    """Every image file and every image inside the zips into ``folder``, then each decoded."""
    written: list[tuple[str, Path]] = []
    for name, data in images:
        base = PurePosixPath(str(name).replace("\\", "/")).name
        if base.lower().endswith(".zip"):
            written += _unzip(base, data, folder, budget)
        elif base.lower().endswith(IMAGE_SUFFIXES) and is_plain_relative(base):
            budget.add_file(base)
            budget.add_bytes(len(data), base)
            (folder / base).write_bytes(data)
            written.append((base, folder / base))
        else:
            raise UploadError(f"{name}: not an image file or a zip of images (take "
                              f"{', '.join(IMAGE_SUFFIXES)} or .zip)")
    if not written:
        raise UploadError("the uploads hold no image files "
                          f"({', '.join(IMAGE_SUFFIXES)})")
    bad = [f"{shown} {problem}" for shown, path in written if (problem := image_problem(path))]
    if bad:
        more = f"; and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        raise UploadError(f"{len(bad)} uploaded image(s) cannot be used: "
                          f"{'; '.join(bad[:_SHOWN])}{more}")


def _unzip(name: str, data: bytes, folder: Path, budget: _Budget) -> list[tuple[str, Path]]:
    """The image members of the zip ``data`` written under ``folder``, paths kept; other members
    (folders, ``__MACOSX``, hidden and non-image files) skipped; a member that would leave the
    folder refuses the whole archive."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise UploadError(f"{name} is not a readable zip file") from None
    written = []
    with archive:
        for info in archive.infolist():
            member = info.filename
            parts = PurePosixPath(member).parts
            if info.is_dir() or (parts and parts[0] == "__MACOSX") or \
                    any(p.startswith(".") and p not in (".", "..") for p in parts):
                continue
            if not is_plain_relative(member):
                raise UploadError(f"{name}: member {member!r} would be written outside the image "
                                  "folder (absolute or with '..')")
            if not member.lower().endswith(IMAGE_SUFFIXES):
                continue
            budget.add_file(f"{name}: {member}")
            dest = folder / member
            dest.parent.mkdir(parents=True, exist_ok=True)
            _copy_member(archive, info, dest, budget, f"{name}: {member}")
            written.append((f"{name}: {member}", dest))
    return written


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, budget: _Budget,
                 shown: str) -> None:
    try:
        with archive.open(info) as src, open(dest, "wb") as out:
            while chunk := src.read(_CHUNK):
                budget.add_bytes(len(chunk), shown)
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
        # a corrupt member, an encrypted one (RuntimeError), an unknown compression method
        raise UploadError(f"{shown} cannot be unpacked ({type(exc).__name__})") from None
