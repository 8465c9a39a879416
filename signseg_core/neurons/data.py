"""Recorded neuron responses to a set of images (paper §4.6, A.1) and a network's features of them.

Two file formats, both next to a folder of the images:

* **CSV**, one row per (image, neuron): columns ``image, neuron, response`` and optionally
  ``session, area, monkey`` (header names are matched case-insensitively). ``image`` is a file
  name relative to the image folder. A neuron not shown an image simply has no row for it.
* **NPZ** with ``responses (n_images, n_neurons)`` (NaN where a neuron was not shown an image),
  ``images (n_images,)`` file names, and optionally ``neurons``, ``sessions``, ``areas``,
  ``monkeys`` (each ``(n_neurons,)``), all plain (non-object) arrays.

Loading is all-or-nothing: every problem found (with its CSV line or NPZ index) is collected into
one :class:`NeuronDataError`, and no dataset is returned unless the whole file is valid.

:func:`dataset_features` computes the penultimate features of the dataset's images once per
(model fingerprint, image-set content hash) and keeps them in the result store.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from signseg_core.errors import SignsegError
from signseg_core.models.zoo import ZooModel, load_image
from signseg_core.store import CODE_VERSION, ResultStore, default_store

__all__ = ["NeuronDataError", "NeuronDataset", "dataset_features", "image_set_digest",
           "load_image", "load_neuron_data"]

REQUIRED_COLUMNS = ("image", "neuron", "response")
METADATA_COLUMNS = ("session", "area", "monkey")
_SHOWN = 25  # problems spelled out in the message; all are in .problems


class NeuronDataError(SignsegError, ValueError):
    """A neuron data file cannot be used; ``.problems`` lists every problem found, in order."""

    def __init__(self, source: str | Path, problems: Sequence[str]):
        self.source = str(source)
        self.problems = list(problems)
        lines = [f"  - {p}" for p in self.problems[:_SHOWN]]
        if len(self.problems) > _SHOWN:
            lines.append(f"  ... and {len(self.problems) - _SHOWN} more")
        n = len(self.problems)
        super().__init__(f"{self.source}: {n} problem{'s' * (n != 1)} in the neuron data:\n"
                         + "\n".join(lines))


@dataclass(frozen=True, eq=False)
class NeuronDataset:
    """Responses of ``n_neurons`` recorded neurons to ``n_images`` images.

    Attributes
    ----------
    images : tuple of Path, length n_images; the fixed order of every image axis.
    neurons : tuple of str, length n_neurons; unique neuron ids.
    responses : float64 array (n_images, n_neurons), read-only; NaN where a neuron was not shown
        an image; otherwise finite.
    sessions, areas, monkeys : tuple of str, length n_neurons; ``""`` where not given.
    source : the file it was read from (for messages).
    """

    images: tuple[Path, ...]
    neurons: tuple[str, ...]
    responses: np.ndarray
    sessions: tuple[str, ...] = ()
    areas: tuple[str, ...] = ()
    monkeys: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        images = tuple(Path(p) for p in self.images)
        neurons = tuple(str(n) for n in self.neurons)
        r = np.array(self.responses, dtype=np.float64)  # a copy: the caller's array stays theirs
        if r.shape != (len(images), len(neurons)):
            raise ValueError(f"responses must have shape (n_images, n_neurons) = "
                             f"({len(images)}, {len(neurons)}), got {r.shape}")
        if np.isinf(r).any():
            raise ValueError("responses contain inf; use NaN only for images not shown")
        for what, items in (("image", images), ("neuron", neurons)):
            dup = _first_duplicate(items)
            if dup is not None:
                raise ValueError(f"{what} {str(dup)!r} appears twice; {what}s must be unique")
        r.setflags(write=False)
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "neurons", neurons)
        object.__setattr__(self, "responses", r)
        for name in METADATA_COLUMNS:
            attr = name + "s"
            values = tuple(str(v) for v in getattr(self, attr)) or ("",) * len(neurons)
            if len(values) != len(neurons):
                raise ValueError(f"{attr} must have one entry per neuron ({len(neurons)}), "
                                 f"got {len(values)}")
            object.__setattr__(self, attr, values)

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def n_neurons(self) -> int:
        return len(self.neurons)

    @property
    def image_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.images)

    def neuron_table(self):
        """One row per neuron: ``neuron, session, area, monkey, n_images, mean_response``."""
        import pandas as pd

        shown = ~np.isnan(self.responses)
        with np.errstate(invalid="ignore"):
            mean = np.nansum(self.responses, axis=0) / np.maximum(shown.sum(0), 1)
        return pd.DataFrame({"neuron": self.neurons, "session": self.sessions,
                             "area": self.areas, "monkey": self.monkeys,
                             "n_images": shown.sum(0), "mean_response": mean})


def _first_duplicate(items):
    seen = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


# -- loading -----------------------------------------------------------------------------------

def load_neuron_data(path: str | Path, *, image_dir: str | Path | None = None,
                     min_images: int = 10) -> NeuronDataset:
    """Read a ``.csv`` or ``.npz`` of neuron responses; see the module docstring for the formats.

    Parameters
    ----------
    path : the response file.
    image_dir : folder the image names are relative to; default the file's own folder.
    min_images : every neuron must have a response to at least this many images (>= 1).

    Raises
    ------
    NeuronDataError
        Listing every problem: missing columns or arrays, an empty file, non-numeric, NaN or
        infinite responses, duplicate (image, neuron) rows, conflicting metadata for a neuron,
        image files missing or unreadable, neurons with fewer than ``min_images`` images.
    """
    if isinstance(min_images, bool) or not isinstance(min_images, int) or min_images < 1:
        raise ValueError(f"min_images must be an int >= 1, got {min_images!r}")
    path = Path(path).expanduser()
    folder = Path(image_dir).expanduser() if image_dir is not None else path.parent
    if not path.is_file():
        raise NeuronDataError(path, [f"file not found: {path}"])
    if not folder.is_dir():
        raise NeuronDataError(path, [f"image folder not found: {folder}"])
    suffix = path.suffix.lower()
    if suffix == ".csv":
        parsed = _parse_csv(path)
    elif suffix == ".npz":
        parsed = _parse_npz(path)
    else:
        raise ValueError(f"unknown neuron data format {suffix!r} of {path}; use .csv or .npz")
    problems, names, where, neurons, responses, meta = parsed
    if names:
        problems += _check_images(folder, names, where)
        counts = (~np.isnan(responses)).sum(axis=0)
        for j, neuron in enumerate(neurons):
            if counts[j] < min_images:
                problems.append(f"neuron {neuron!r} has responses to {counts[j]} images, fewer "
                                f"than min_images={min_images}")
    if problems:
        raise NeuronDataError(path, problems)
    return NeuronDataset(tuple(folder / n for n in names), tuple(neurons), responses,
                         sessions=meta["session"], areas=meta["area"], monkeys=meta["monkey"],
                         source=str(path))


def _parse_csv(path: Path):
    """→ (problems, image names, where each image first occurs, neurons, responses, metadata)."""
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        return [f"it is not UTF-8 text ({exc.reason} at byte {exc.start})"], [], {}, [], None, \
            None
    if not text.strip():
        return [f"the file is empty; expected a header with columns {list(REQUIRED_COLUMNS)}"], \
            [], {}, [], None, None
    reader = csv.reader(text.splitlines(keepends=True))
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        return [f"line 1: missing column(s) {missing}; the header has {header}"], [], {}, [], \
            None, None
    col = {name: header.index(name) for name in (*REQUIRED_COLUMNS, *METADATA_COLUMNS)
           if name in header}
    images: dict[str, int] = {}  # name -> column index, in order of first appearance
    where: dict[str, int] = {}  # name -> first line
    neurons: dict[str, int] = {}
    meta: dict[str, dict[str, tuple[str, int]]] = {name: {} for name in METADATA_COLUMNS}
    seen: dict[tuple[str, str], int] = {}
    cells: list[tuple[int, int, float]] = []
    for row in reader:
        line = reader.line_num
        if not any(field.strip() for field in row):
            continue
        if len(row) != len(header):
            problems.append(f"line {line}: {len(row)} fields, but the header has {len(header)}")
            continue
        image, neuron = row[col["image"]].strip(), row[col["neuron"]].strip()
        raw = row[col["response"]].strip()
        bad = [f"empty {c}" for c, v in (("image", image), ("neuron", neuron)) if not v]
        try:
            value = float(raw)
        except ValueError:
            bad.append(f"response {raw!r} is not a number")
            value = None
        if value is not None and not np.isfinite(value):
            bad.append(f"response is {raw!r}; every row needs a finite response (leave out the "
                       "rows of images a neuron was not shown)")
        if (image, neuron) in seen and image and neuron:
            bad.append(f"duplicate of line {seen[(image, neuron)]} (image {image!r}, "
                       f"neuron {neuron!r})")
        for name in METADATA_COLUMNS:
            if name in col and neuron:
                v = row[col[name]].strip()
                first = meta[name].setdefault(neuron, (v, line))
                if first[0] != v:
                    bad.append(f"neuron {neuron!r} has {name} {v!r} here but {first[0]!r} on "
                               f"line {first[1]}; neuron ids must be unique across {name}s")
        if bad:
            problems.extend(f"line {line}: {b}" for b in bad)
            continue
        seen[(image, neuron)] = line
        i = images.setdefault(image, len(images))
        where.setdefault(image, line)
        j = neurons.setdefault(neuron, len(neurons))
        cells.append((i, j, value))
    if not seen and not problems:
        problems.append("the file has a header but no data rows")
    responses = np.full((len(images), len(neurons)), np.nan)
    for i, j, value in cells:
        responses[i, j] = value
    metadata = {name: tuple(meta[name].get(n, ("", 0))[0] for n in neurons)
                for name in METADATA_COLUMNS}
    where_text = {name: f"first on line {line}" for name, line in where.items()}
    return problems, list(images), where_text, list(neurons), responses, metadata


def _parse_npz(path: Path):
    problems: list[str] = []
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            msg = ("it holds object arrays, which are never unpickled; save names as plain "
                   "string arrays, e.g. np.array(names, dtype=str)")
        else:
            msg = f"it is not a readable .npz ({exc})"
        return [msg], [], {}, [], None, None
    except Exception as exc:  # a truncated or foreign file
        return [f"it is not a readable .npz ({type(exc).__name__}: {exc})"], [], {}, [], None, None
    missing = [k for k in ("responses", "images") if k not in arrays]
    if missing:
        return [f"missing array(s) {missing}; the file has {sorted(arrays)}"], [], {}, [], \
            None, None
    r = arrays["responses"]
    if r.ndim != 2 or r.size == 0:
        return [f"responses must be a non-empty (n_images, n_neurons) matrix, got shape "
                f"{r.shape}"], [], {}, [], None, None
    if not (np.issubdtype(r.dtype, np.number) or r.dtype == bool) \
            or np.issubdtype(r.dtype, np.complexfloating):
        return [f"responses must be real numbers, got dtype {r.dtype}"], [], {}, [], None, None
    r = r.astype(np.float64)
    n_images, n_neurons = r.shape
    names = [str(s).strip() for s in np.asarray(arrays["images"]).ravel()]
    neurons = [str(s).strip() for s in np.asarray(arrays.get("neurons",
                                                             np.arange(n_neurons))).ravel()]
    meta = {}
    for key, n, what in (("images", n_images, "n_images"), ("neurons", n_neurons, "n_neurons")):
        got = len(names if key == "images" else neurons)
        if got != n:
            problems.append(f"{key} has {got} entries but responses has {what} = {n}")
    for name in METADATA_COLUMNS:
        values = [str(s) for s in np.asarray(arrays.get(name + "s", [""] * n_neurons)).ravel()]
        if len(values) != n_neurons:
            problems.append(f"{name}s has {len(values)} entries but there are {n_neurons} "
                            "neurons")
        meta[name] = tuple(values)
    if problems:
        return problems, [], {}, [], None, None
    for what, items in (("images", names), ("neurons", neurons)):
        first: dict[str, int] = {}
        for k, item in enumerate(items):
            if not item:
                problems.append(f"{what}[{k}] is empty")
            elif item in first:
                problems.append(f"{what}[{k}] duplicates {what}[{first[item]}] ({item!r})")
            first.setdefault(item, k)
    for i, j in zip(*np.nonzero(np.isinf(r))):
        problems.append(f"responses[{i}, {j}] (image {names[i]!r}, neuron {neurons[j]!r}) is "
                        f"{r[i, j]}; use NaN for images a neuron was not shown")
    where = {name: f"images[{k}]" for k, name in reversed(list(enumerate(names)))}
    return problems, names, where, neurons, r, meta


def _check_images(folder: Path, names: Sequence[str], where: dict[str, str]) -> list[str]:
    from PIL import Image, UnidentifiedImageError

    problems = []
    for name in names:
        path = folder / name
        if not path.is_file():
            problems.append(f"image {name!r} ({where[name]}) not found in {folder}")
            continue
        try:
            with Image.open(path):
                pass
        except (UnidentifiedImageError, OSError) as exc:
            problems.append(f"image {name!r} ({where[name]}) is not an image PIL can read "
                            f"({type(exc).__name__})")
    return problems


# -- features -----------------------------------------------------------------------------------

def image_set_digest(paths: Sequence[str | Path]) -> str:
    """SHA-256 over the bytes of every file, in order: equal iff the same images, same order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class FeatureKey:
    """Store key of one model's penultimate features of one ordered image set."""

    model: str
    model_fingerprint: str
    images_digest: str
    n_images: int
    code_version: str = CODE_VERSION


def dataset_features(model: ZooModel, dataset: NeuronDataset, *, batch_size: int = 32,
                     store: ResultStore | None | bool = None,
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The features the model's readout reads, for every image of the dataset.

    Each image is loaded with PIL as RGB in [0, 1] at its own size and preprocessed by the model
    (centre crop, resize, normalise), so this equals ``model.features`` image by image.

    Parameters
    ----------
    model : the network (read only).
    dataset : its ``images`` give the rows, in order.
    batch_size : images per trunk pass (>= 1); the result does not depend on it.
    store : a ResultStore; None for the default store; False for none.
    progress : called as ``progress(images_done, n_images)`` after each batch (once with
        ``(n, n)`` when the features come from the store).

    Returns
    -------
    float32 array (n_images, model.n_features)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if store is None:
        store = default_store()
    elif store is False:
        store = None
    n = dataset.n_images
    key = FeatureKey(model.name, model.fingerprint, image_set_digest(dataset.images), n)
    got = store.get(key) if store is not None else None
    if got is not None:
        feats = got[0].get("features")
        if feats is not None and feats.shape == (n, model.n_features):
            if progress is not None:
                progress(n, n)
            return feats.astype(np.float32, copy=False)
        store.delete(key)
    out = np.empty((n, model.n_features), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = torch.cat([model.preprocess(load_image(p)[None])
                               for p in dataset.images[start:stop]])
            out[start:stop] = model.trunk(batch).float().cpu().numpy()
            if progress is not None:
                progress(stop, n)
    if store is not None:
        store.put(key, {"features": out})
    return out
