"""A disk-backed result store under ``cache/`` (``$SIGNSEG_CACHE_DIR``), on diskcache.

Each entry is keyed by a frozen dataclass holding everything that determines it (model
fingerprint, unit, sign, alpha, generator, optimizer settings, seed, code version) and stored as
one self-describing blob: an ``.npz`` of plain arrays (images as PNG bytes, scores, codes) plus a
JSON header. No pickles are read back, so a tampered cache cannot run code; an entry that fails to
parse, or whose header names another key than the one asked for (blobs swapped on disk), is
deleted and reported as missing, so the caller recomputes it. An index (``cache.db``) that SQLite
cannot read is moved aside (``cache.db.unreadable-<time>``, named in the warning) and a fresh store
is opened; a store path that is not a folder is a one-sentence :class:`StoreError`.

diskcache writes a value's file before committing its row, so a reader in another process sees
either the whole old entry or the whole new one, never half of one. ``Cache`` (not
``FanoutCache``, which silently drops writes on its 0.01 s default timeout) with a long timeout;
``check(fix=True)`` at open removes files orphaned by a killed writer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import diskcache
import numpy as np
from diskcache.core import DBNAME, MODE_PICKLE

from signseg_core import paths
from signseg_core.errors import StoreError

log = logging.getLogger(__name__)

#: Bump when a change to the engine changes what a stored result would contain.
CODE_VERSION = "1"

_FORMAT = "signseg-entry-v1"


def key_digest(key: Any) -> str:
    """A stable hex digest of a key: a dataclass, dict, or other JSON-able value."""
    if dataclasses.is_dataclass(key) and not isinstance(key, type):
        payload = {"__type__": type(key).__name__, **dataclasses.asdict(key)}
    else:
        payload = key
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def encode_entry(arrays: dict[str, np.ndarray], meta: dict | None = None,
                 blobs: dict[str, list[bytes]] | None = None) -> bytes:
    """Pack arrays, lists of byte strings (e.g. PNGs) and a JSON header into one npz blob."""
    payload: dict[str, np.ndarray] = {}
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.dtype == object:
            raise TypeError(f"array {name!r} has dtype object; the store keeps plain arrays only")
        payload[f"a__{name}"] = arr
    for name, items in (blobs or {}).items():
        lengths = np.array([len(b) for b in items], dtype=np.int64)
        payload[f"b__{name}__len"] = lengths
        payload[f"b__{name}__data"] = np.frombuffer(b"".join(items), dtype=np.uint8)
    header = {"format": _FORMAT, "meta": meta or {}}
    payload["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **payload)
    return buf.getvalue()


def decode_entry(raw: bytes) -> tuple[dict[str, np.ndarray], dict, dict[str, list[bytes]]]:
    """Inverse of :func:`encode_entry`; raises ``ValueError`` on anything malformed."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            files = {name: npz[name] for name in npz.files}
        header = json.loads(bytes(files.pop("header")).decode())
    except Exception as exc:
        raise ValueError(f"corrupt store entry ({type(exc).__name__}: {exc})") from exc
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise ValueError("corrupt store entry (unknown format)")
    arrays = {k[3:]: v for k, v in files.items() if k.startswith("a__")}
    blobs: dict[str, list[bytes]] = {}
    for k in files:
        if k.startswith("b__") and k.endswith("__len"):
            name = k[3:-5]
            lengths, data = files[k], files.get(f"b__{name}__data")
            if data is None or int(lengths.sum()) != data.size:
                raise ValueError(f"corrupt store entry (blob {name!r} truncated)")
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            blobs[name] = [data[offsets[i]:offsets[i + 1]].tobytes() for i in range(len(lengths))]
    return arrays, header.get("meta", {}), blobs


class _SafeDisk(diskcache.Disk):
    """A diskcache ``Disk`` that never unpickles: values are bytes, keys are strings."""

    def fetch(self, mode, filename, value, read):
        if mode == MODE_PICKLE:
            raise ValueError("refusing to unpickle a store value")
        return super().fetch(mode, filename, value, read)

    def get(self, key, raw):
        if not raw:
            raise ValueError("refusing to unpickle a store key")
        return super().get(key, raw)


class ResultStore:
    """Whole-entry reads and writes of result blobs keyed by dataclasses.

    Parameters
    ----------
    directory : folder of the store; default ``<cache_dir>/results``.
    """

    def __init__(self, directory: str | Path | None = None, *, timeout: float = 60.0):
        self.directory = Path(directory) if directory else results_dir()
        _make_folder(self.directory)
        self._cache = _open_index(self.directory, timeout)
        try:
            self._cache.check(fix=True)
        except Exception as exc:  # a damaged index must not stop the tool; entries recompute
            log.warning("result store check failed (%s); continuing", exc)

    def _k(self, key: Any) -> str:
        return key_digest(key)

    def __contains__(self, key: Any) -> bool:
        return self._k(key) in self._cache

    def get_raw(self, key: Any) -> bytes | None:
        """The stored blob as it is on disk (not checked: :meth:`get` checks it), or None."""
        try:
            raw = self._cache.get(self._k(key), default=None, retry=True)
        except (ValueError, OSError) as exc:  # refused pickle, vanished value file
            log.warning("dropping %s: %s", self._k(key)[:12], exc)
            self.delete(key)
            return None
        if raw is None:
            # a row whose value file vanished; read again first: another writer may have just
            # replaced the file (diskcache reads a missing file as absent)
            if self._k(key) in self._cache and self._cache.get(self._k(key), retry=True) is None:
                log.warning("dropping %s: its value file is gone", self._k(key)[:12])
                self.delete(key)
            return None
        if not isinstance(raw, (bytes, bytearray)):
            self.delete(key)
            return None
        return bytes(raw)

    def get(self, key: Any):
        """``(arrays, meta, blobs)`` or None when absent, corrupt, or holding another key's entry
        (its header's key differs from ``key``): such an entry is deleted, so it is recomputed."""
        raw = self.get_raw(key)
        if raw is None:
            return None
        try:
            entry = decode_entry(raw)
            if not same_key(entry[1].get("key"), key):
                raise ValueError("it holds the entry of another key (blobs swapped on disk?)")
        except ValueError as exc:
            log.warning("dropping %s: %s", self._k(key)[:12], exc)
            self.delete(key)
            return None
        return entry

    def put(self, key: Any, arrays: dict[str, np.ndarray], meta: dict | None = None,
            blobs: dict[str, list[bytes]] | None = None) -> None:
        meta = {**(meta or {}), "key": _jsonable(key)}
        ok = self._cache.set(self._k(key), encode_entry(arrays, meta, blobs), retry=True)
        if not ok:  # pragma: no cover - Cache.set with retry only fails on a broken disk
            raise OSError(f"could not write result to {self.directory}")

    def delete(self, key: Any) -> None:
        self._cache.delete(self._k(key), retry=True)

    def size_bytes(self) -> int:
        return int(self._cache.volume())

    def __bool__(self) -> bool:  # an empty store is still a store
        return True

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        self._cache.clear(retry=True)

    def close(self) -> None:
        self._cache.close()


def _jsonable(key: Any) -> Any:
    if dataclasses.is_dataclass(key) and not isinstance(key, type):
        return json.loads(json.dumps(dataclasses.asdict(key), default=str))
    return json.loads(json.dumps(key, default=str))


def same_key(stored: Any, key: Any) -> bool:
    """True when an entry's header key ``stored`` is ``key`` as :meth:`ResultStore.put` wrote it
    (compared as canonical JSON, so NaN equals NaN and tuples equal lists)."""
    def canonical(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return stored is not None and canonical(stored) == canonical(_jsonable(key))


def results_dir() -> Path:
    """``<cache_dir>/results``, the default store's folder; a cache path that is not a folder is
    a :class:`StoreError`."""
    with _as_store_error():
        return paths.cache_dir() / "results"


def _make_folder(directory: Path) -> None:
    with _as_store_error():
        paths.folder(directory, "SIGNSEG_CACHE_DIR")


@contextlib.contextmanager
def _as_store_error():
    """:mod:`signseg_core.paths`' one-sentence refusal of a folder, as a :class:`StoreError`."""
    try:
        yield
    except (NotADirectoryError, PermissionError) as exc:
        raise StoreError(f"The result store cannot be opened: {exc}.") from None


def _diskcache(directory: Path, timeout: float) -> diskcache.Cache:
    return diskcache.Cache(str(directory), timeout=timeout, disk=_SafeDisk, size_limit=2**36,
                           eviction_policy="none")


def _open_index(directory: Path, timeout: float) -> diskcache.Cache:
    """The diskcache of ``directory``; an index SQLite cannot read is moved aside (kept for a
    post-mortem) and a fresh one made, so a damaged store costs recomputation, not the tool."""
    try:
        return _diskcache(directory, timeout)
    except sqlite3.OperationalError as exc:  # locked, busy, unreadable file: not damage
        raise StoreError(f"The result store index {directory / DBNAME} cannot be opened "
                         f"({exc}).") from None
    except sqlite3.DatabaseError as first:
        try:  # another process may have replaced it meanwhile
            return _diskcache(directory, timeout)
        except sqlite3.DatabaseError:
            pass
        aside = directory / f"{DBNAME}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        for suffix in ("", "-wal", "-shm"):
            if (directory / (DBNAME + suffix)).exists():
                os.replace(directory / (DBNAME + suffix), f"{aside}{suffix}")
        log.warning("the result store index %s could not be read (%s): moved it to %s and started "
                    "an empty store; results are recomputed as they are needed",
                    directory / DBNAME, first, aside)
        return _diskcache(directory, timeout)


_default: ResultStore | None = None
_default_lock = threading.Lock()


def default_store() -> ResultStore:
    """The process-wide store under the current cache dir (re-opened if the dir changed)."""
    global _default
    with _default_lock:
        want = results_dir()
        if _default is None or _default.directory != want:
            _default = ResultStore(want)
        return _default
