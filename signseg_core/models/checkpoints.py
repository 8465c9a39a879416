"""Safe loading, checking, fingerprinting and converting of weight files.

Every pickle is read with ``torch.load(path, map_location="cpu", weights_only=True)``, so a file
that would import anything beyond tensors and plain containers is refused, never run. Failures
are one-sentence engine errors: ``WeightsNotFoundError`` (no file), ``CheckpointError`` (truncated,
corrupt, no tensors, NaN or infinite weights, not fitting the architecture) and
``UnsafeCheckpointError`` (the pickle would run code). MadryLab ``robustness`` checkpoints (robust
ResNet-50s, Salman et al. 2020) hold non-tensor objects: :func:`load_madry_robust` converts them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from signseg_core.errors import CheckpointError, UnsafeCheckpointError, WeightsNotFoundError
from signseg_core.paths import weights_dir

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")
SAFETENSORS_SUFFIX = ".safetensors"
NESTED_KEYS = ("state_dict", "model", "model_state_dict")
#: The only globals, beyond torch's weights-only defaults, a robustness checkpoint may import.
MADRY_SAFE_GLOBALS = (argparse.Namespace,)
MADRY_FORMAT = "signseg-madry-robust-v1"
_SHOWN = 5


def sha256_file(path: str | Path, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks of ``chunk_bytes`` (memory stays flat)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def state_fingerprint(state_or_module: Mapping[str, Tensor] | nn.Module) -> str:
    """Stable hex digest (64 chars) of tensors' names, dtypes, shapes and bytes, sorted by name.

    Equal for bitwise-equal weights whatever the key order, device, strides or ``requires_grad``;
    different when one value, dtype, shape or name changes. One pass over the bytes (plus a copy
    of tensors that are not contiguous or not on the CPU).
    """
    state = state_or_module
    state = state.state_dict() if isinstance(state, nn.Module) else state
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name]
        if not isinstance(tensor, Tensor):
            raise TypeError(f"state entry {name!r} is a {type(tensor).__name__}, not a tensor")
        tensor = tensor.detach().to("cpu").resolve_conj().resolve_neg().contiguous()
        header = f"{name}\x00{tensor.dtype}\x00{tuple(tensor.shape)}".encode()
        digest.update(len(header).to_bytes(8, "little") + header)
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def strip_prefix(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """A new dict with ``prefix`` removed from the keys that start with it; other keys kept.

    ``strip_prefix(state, "module.")`` undoes ``nn.DataParallel``. Raises ``CheckpointError`` when
    stripping would make two keys equal.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = key[len(prefix):] if prefix and key.startswith(prefix) else key
        if new in out:
            raise CheckpointError(f"stripping {prefix!r} makes two checkpoint keys {new!r}.")
        out[new] = value
    return out


def select_prefix(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """A new dict of the entries whose key starts with ``prefix``, with the prefix removed."""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def load_state_dict_file(
    path: str | Path, *, what: str = "model", hint: str = "", strip_data_parallel: bool = True,
    fmt: str | None = None,
) -> dict[str, Tensor]:
    """Load a state dict of CPU tensors from a ``.pth/.pt/.bin/.ckpt/.tar`` or ``.safetensors``.

    Parameters
    ----------
    path : a file holding a state dict, or a dict with one under ``"state_dict"``, ``"model"``
        or ``"model_state_dict"`` (nested up to three levels). Nothing in it is ever run.
    what : what the weights are for, used in messages (``"the robust ResNet-50"``).
    hint : where to get the file, added to the ``WeightsNotFoundError`` message.
    strip_data_parallel : remove ``"module."`` when every key starts with it.
    fmt : ``"torch"`` or ``"safetensors"`` to read a file whatever its extension (caches that
        name files by hash); default: from the extension.
    """
    path = _existing_file(path, what=what, hint=hint)
    suffix = path.suffix.lower()
    if fmt not in (None, "torch", "safetensors"):
        raise ValueError(f"fmt {fmt!r}; choose from None, 'torch', 'safetensors'")
    if fmt is not None:
        suffix = SAFETENSORS_SUFFIX if fmt == "safetensors" else TORCH_SUFFIXES[0]
    if suffix == SAFETENSORS_SUFFIX:
        state, _ = _read_safetensors(path)
    elif suffix in TORCH_SUFFIXES:
        obj = _torch_load(path)
        state = _find_state_dict(obj, depth=3)
        if state is None:
            raise CheckpointError(
                f"{path} holds no state dict: expected a mapping from names to tensors, or one "
                f"under {', '.join(map(repr, NESTED_KEYS))}, but found {_describe(obj)}.")
    else:
        raise CheckpointError(f"cannot load {path}: unknown weight-file extension {suffix!r}; "
                              f"choose from {', '.join((*TORCH_SUFFIXES, SAFETENSORS_SUFFIX))}.")
    if strip_data_parallel and all(key.startswith("module.") for key in state):
        state = strip_prefix(state, "module.")
    return check_finite(state, path)


def check_finite(state: Mapping[str, Tensor], source: str | Path) -> Mapping[str, Tensor]:
    """``state`` when its floating-point tensors are all finite, else a ``CheckpointError`` naming
    those holding NaN or infinity (a trained network has none: the file is damaged)."""
    bad = [name for name, t in state.items() if isinstance(t, Tensor)
           and (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(f"{source} holds NaN or infinite weights in {_shown(bad)}, so it "
                              "cannot be used: a trained network has none; fetch the file again.")
    return state


def save_state_dict(
    state: Mapping[str, Tensor], path: str | Path, *, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write tensors to ``.safetensors`` (with optional string ``metadata``) or a plain pickle.

    The file appears atomically (temp file in the same folder, then ``os.replace``), so a crash
    never leaves a half-written file at ``path``. Tensors are copied to the CPU; views and tensors
    sharing memory are cloned so only their own bytes are stored. Returns ``path``.
    """
    path, suffixes = Path(path), (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX)
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise ValueError(f"unknown weight-file extension {suffix!r}; choose from {suffixes}")
    if metadata is not None and suffix != SAFETENSORS_SUFFIX:
        raise ValueError(f"metadata can only be stored in .safetensors files, not {suffix!r}")
    if metadata and not all(isinstance(v, str) for v in (*metadata, *metadata.values())):
        raise TypeError("metadata keys and values must all be strings")
    if not state:
        raise ValueError("refusing to save an empty state dict")
    tensors: dict[str, Tensor] = {}
    seen: set[int] = set()
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, Tensor):
            raise TypeError(f"state entry {name!r} must map a string to a tensor, "
                            f"got {type(value).__name__}")
        tensor = value.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != tensor.nbytes:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        tensors[name] = tensor
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        if suffix == SAFETENSORS_SUFFIX:
            save_file(tensors, tmp, metadata=dict(metadata) if metadata else None)
        else:
            torch.save(tensors, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_into(
    module: nn.Module, state: Mapping[str, Tensor], *, what: str, strict: bool = True
) -> tuple[str, ...]:
    """Copy ``state`` into ``module``'s parameters and buffers, or raise before touching any.

    Missing keys and shape mismatches always raise ``CheckpointError`` (listing up to five of
    each), so a module is never half-loaded; unexpected checkpoint keys raise too unless
    ``strict=False``, which ignores them (e.g. a dropped classifier head). Missing
    ``*.num_batches_tracked`` counters are tolerated, as torch does. ``state`` is not modified.
    Returns the sorted checkpoint keys that were ignored (empty when ``strict``).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = sorted(k for k in state if k not in own)
    mismatched = []
    for key, target in own.items():
        if key in state and isinstance(target, Tensor):
            value = state[key]
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            if shape != tuple(target.shape):
                mismatched.append(f"{key}: checkpoint {shape} vs model {tuple(target.shape)}")
    if missing or mismatched or (strict and unexpected):
        shown = unexpected if strict else []
        raise CheckpointError(_misfit_message(what, missing, shown, mismatched))
    try:
        module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"The checkpoint for {what} could not be copied into the model "
                              f"({_first_line(exc)}).") from exc
    return () if strict else tuple(unexpected)


def convert_madry_checkpoint(src: str | Path, dst: str | Path) -> dict[str, str]:
    """Convert a MadryLab ``robustness`` checkpoint into a ``.safetensors`` file at ``dst``.

    The source pickles ``{"model": state, "optimizer": ..., "epoch": int, ...}``; ``state`` holds
    the network under ``module.model.`` (kept, prefix stripped), a copy under
    ``module.attacker.model.`` (dropped) and ``module.normalizer.new_mean``/``new_std`` (3, 1, 1).
    Safety: torch's weights-only unpickler imports nothing but tensors and plain containers; we
    add only :data:`MADRY_SAFE_GLOBALS` (``argparse.Namespace`` has no ``__reduce__`` or
    ``__setstate__``: unpickling one only fills an attribute dict). Anything else raises
    ``UnsafeCheckpointError`` unrun (``safe_globals`` is process-wide while active, so a thread
    loading meanwhile may also accept a ``Namespace``: harmless). ``dst`` is written atomically.

    Returns
    -------
    dict[str, str] : the metadata written: ``format``, ``source_name``, ``source_sha256``,
        ``epoch`` (``""`` if absent), and ``mean`` / ``std`` as JSON lists of 3 floats.
    """
    src, dst = _existing_file(src, what="the robust network", hint=""), Path(dst)
    if dst.suffix.lower() != SAFETENSORS_SUFFIX:
        raise ValueError(f"the converted file must end in .safetensors, got {dst.name!r}")
    digest = sha256_file(src)
    ckpt = _torch_load(src, allowed=MADRY_SAFE_GLOBALS)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, Mapping) else ckpt
    if not _is_state_dict(state):
        raise CheckpointError(f"{src} is not a robustness checkpoint: expected a mapping with a "
                              f"'model' state dict, but found {_describe(ckpt)}.")
    if all(key.startswith("module.") for key in state):
        state = strip_prefix(state, "module.")
    weights = select_prefix(state, "model.")
    stats = {name: state.get(f"normalizer.new_{name}") for name in ("mean", "std")}
    if not weights or any(v is None or v.numel() != 3 for v in stats.values()):
        raise CheckpointError(f"{src} is not a robustness checkpoint: it needs 'module.model.*' "
                              "weights and 3-channel 'module.normalizer.new_mean'/'new_std', "
                              f"but its keys are {_shown(list(state))}.")
    epoch = ckpt.get("epoch")
    epoch = epoch.item() if isinstance(epoch, Tensor) and epoch.numel() == 1 else epoch
    metadata = {"format": MADRY_FORMAT, "source_name": src.name, "source_sha256": digest,
                "epoch": "" if epoch is None else str(epoch),
                **{k: json.dumps(v.detach().double().flatten().tolist()) for k, v in stats.items()}}
    save_state_dict(weights, dst, metadata=metadata)
    return metadata


def load_madry_robust(
    src: str | Path, *, cache_dir: str | Path | None = None, what: str = "the robust ResNet-50"
) -> tuple[dict[str, Tensor], tuple[float, float, float], tuple[float, float, float]]:
    """Load a robustness checkpoint through a converted ``.safetensors`` cache.

    Converts ``src`` once into ``cache_dir / f"{sha256(src)[:16]}.safetensors"`` (default
    ``cache_dir``: ``weights_dir() / "converted"``); later calls read that file, and a cached file
    that is corrupt or stale is converted again.

    Returns ``(state, mean, std)``: the network's weights (torchvision ResNet names) and the
    per-channel RGB normalisation of inputs in [0, 1], applied before the network.
    """
    src = _existing_file(src, what=what, hint="")
    digest = sha256_file(src)
    folder = Path(cache_dir) if cache_dir is not None else weights_dir() / "converted"
    cached = folder / f"{digest[:16]}{SAFETENSORS_SUFFIX}"
    loaded = _load_converted(cached, digest)
    if loaded is None:
        convert_madry_checkpoint(src, cached)
        loaded = _load_converted(cached, digest)
    if loaded is None:  # what we just wrote does not read back (or src changed meanwhile)
        raise CheckpointError(f"the converted weights at {cached} could not be read back.")
    check_finite(loaded[0], src)
    return loaded


# ----------------------------------------------------------------------------- private helpers


def _existing_file(path: str | Path, *, what: str, hint: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsNotFoundError(what, path, hint)
    if not path.is_file():
        raise CheckpointError(f"the weights for {what} should be a file, but {path} is a folder.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the file looks truncated or corrupt, "
                              "so download or copy it again.")
    return path


def _first_line(exc: BaseException) -> str:
    line = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
    return line if len(line) <= 160 else line[:157] + "..."


def _corrupt(path: Path, exc: BaseException) -> CheckpointError:
    return CheckpointError(
        f"{path} could not be read: the file looks truncated or corrupt "
        f"({path.stat().st_size:,} bytes; {_first_line(exc)}), so download or copy it again.")


def _torch_load(path: Path, *, allowed: tuple = ()) -> object:
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise _unsafe(path, exc, allowed) from exc
        raise _corrupt(path, exc) from exc
    except Exception as exc:  # zip, EOF, RuntimeError from the stream reader, ...
        raise _corrupt(path, exc) from exc


def _unsafe(path: Path, exc: BaseException, allowed: tuple) -> UnsafeCheckpointError:
    # torch names the first refused global; a static scan of a zip file's pickle names them all.
    names = [n.rstrip(".") for n in re.findall(r"GLOBAL ([\w.]+)", str(exc))]
    with contextlib.suppress(Exception):  # not a torch.save zip file
        names += torch.serialization.get_unsafe_globals_in_checkpoint(path)
    safe = {f"{g.__module__}.{g.__qualname__}" for g in allowed}
    names = [name for name in dict.fromkeys(names) if name not in safe]
    if names:
        reason = f"unpickling it would import {_shown(names)}"
    else:  # e.g. a raw protocol-4 pickle, refused at its first FRAME before any GLOBAL
        detail = re.search(r"Unsupported[^\n]*", str(exc))
        reason = ("it uses pickle instructions the weights-only loader refuses"
                  + (f" ({detail.group(0).strip()})" if detail else ""))
    return UnsafeCheckpointError(
        f"Refused to load {path} because {reason}, which a plain weights file never needs, so no "
        "code from it was run; use a file from a trusted source (or a .safetensors file).")


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:
        raise _corrupt(path, exc) from exc
    if not state:
        raise CheckpointError(f"{path} holds no tensors.")
    return state, metadata


def _is_state_dict(obj: object) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()))


def _find_state_dict(obj: object, *, depth: int) -> dict[str, Tensor] | None:
    if _is_state_dict(obj):
        return dict(obj)
    if depth > 0 and isinstance(obj, Mapping):
        for key in NESTED_KEYS:
            if key in obj and (found := _find_state_dict(obj[key], depth=depth - 1)) is not None:
                return found
    return None


def _describe(obj: object) -> str:
    if not isinstance(obj, Mapping):
        return f"a {type(obj).__name__}"
    return f"a mapping with keys {_shown([str(k) for k in obj])}" if obj else "an empty mapping"


def _shown(items: list[str]) -> str:
    more = len(items) - _SHOWN
    return ", ".join(items[:_SHOWN]) + (f", and {more} more" if more > 0 else "")


def _misfit_message(what: str, missing: list, unexpected: list, mismatched: list) -> str:
    kinds = ((missing, "missing key", "s"), (unexpected, "unexpected key", "s"),
             (mismatched, "shape mismatch", "es"))
    parts = [f"{len(items)} {noun}{'' if len(items) == 1 else plural} ({_shown(items)})"
             for items, noun, plural in kinds if items]
    return f"The checkpoint for {what} does not fit the architecture: {'; '.join(parts)}."


def _load_converted(cached: Path, digest: str) -> tuple | None:
    """The converted weights with their mean and std, or None when absent, corrupt or stale."""
    try:
        state, metadata = _read_safetensors(cached)
        if metadata.get("format") != MADRY_FORMAT or metadata.get("source_sha256") != digest:
            return None
        mean, std = (tuple(map(float, json.loads(metadata[key]))) for key in ("mean", "std"))
    except (CheckpointError, OSError, KeyError, ValueError, TypeError):  # absent, corrupt, stale
        return None
    return (state, mean, std) if len(mean) == len(std) == 3 else None
