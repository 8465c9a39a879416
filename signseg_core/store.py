"""A disk-backed result store under ``cache/`` (``$SIGNSEG_CACHE_DIR``), on diskcache.

Each entry is keyed by a frozen dataclass holding everything that determines it (model
fingerprint, unit, sign, alpha, generator, optimizer settings, seed, code version) and stored as
one self-describing blob: an ``.npz`` of plain arrays (images as PNG bytes, scores, codes) plus a
JSON header. No pickles are read back, so a tampered cache cannot run code; an entry that fails to
parse is deleted and reported as missing, so the caller recomputes it.

diskcache writes a value's file before committing its row, so a reader in another process sees
either the whole old entry or the whole new one, never half of one. ``Cache`` (not
``FanoutCache``, which silently drops writes on its 0.01 s default timeout) with a long timeout;
``check(fix=True)`` at open removes files orphaned by a killed writer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import threading
from pathlib import Path
from typing import Any

import diskcache
import numpy as np
from diskcache.core import MODE_PICKLE

from signseg_core import paths

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
        self.directory = Path(directory) if directory else paths.cache_dir() / "results"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(str(self.directory), timeout=timeout, disk=_SafeDisk,
                                      size_limit=2**36, eviction_policy="none")
        try:
            self._cache.check(fix=True)
        except Exception as exc:  # a damaged index must not stop the tool; entries recompute
            log.warning("result store check failed (%s); continuing", exc)

    def _k(self, key: Any) -> str:
        return key_digest(key)

    def __contains__(self, key: Any) -> bool:
        return self._k(key) in self._cache

    def get_raw(self, key: Any) -> bytes | None:
        try:
            raw = self._cache.get(self._k(key), default=None, retry=True)
        except (ValueError, OSError) as exc:  # refused pickle, vanished value file
            log.warning("dropping %s: %s", self._k(key)[:12], exc)
            self.delete(key)
            return None
        if raw is None:
            return None
        if not isinstance(raw, (bytes, bytearray)):
            self.delete(key)
            return None
        return bytes(raw)

    def get(self, key: Any):
        """``(arrays, meta, blobs)`` or None when absent or corrupt (a corrupt entry is deleted)."""
        raw = self.get_raw(key)
        if raw is None:
            return None
        try:
            return decode_entry(raw)
        except ValueError as exc:
            log.warning("dropping %s: %s", self._k(key)[:12], exc)
            self.delete(key)
            return None

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


_default: ResultStore | None = None
_default_lock = threading.Lock()


def default_store() -> ResultStore:
    """The process-wide store under the current cache dir (re-opened if the dir changed)."""
    global _default
    with _default_lock:
        want = paths.cache_dir() / "results"
        if _default is None or _default.directory != want:
            _default = ResultStore(want)
        return _default
