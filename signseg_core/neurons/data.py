"""Recorded neuron responses to a set of images (paper §4.6, A.1) and a network's features of them.

Two file formats, both next to a folder of the images:

* **CSV**, one row per (image, neuron): columns ``image, neuron, response`` and optionally
  ``session, area, monkey`` (header names are matched case-insensitively). ``image`` is a file
  name relative to the image folder. A neuron not shown an image simply has no row for it.
* **NPZ** with ``responses (n_images, n_neurons)`` (NaN where a neuron was not shown an image),
  ``images (n_images,)`` file names, and optionally ``neurons``, ``sessions``, ``areas``,
  ``monkeys`` (each ``(n_neurons,)``), all plain (non-object) arrays.

Loading is all-or-nothing: every problem found (with its CSV line or NPZ index) is collected into
one :class:`NeuronDataError`, and no dataset is returned unless the whole file is valid (the
parsers themselves are in :mod:`signseg_core.neurons.response_files`, with the limits a file must
keep: finite responses of magnitude at most 1e18, image names inside the image folder, every
image decoded in full within its size limits). Nothing here needs a model, so bad data fails
before one loads.

:func:`dataset_features` computes the penultimate features of the dataset's images once per
(model fingerprint, image-set content hash) and keeps them in the result store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from signseg_core.errors import SignsegError
from signseg_core.models.zoo import ZooModel, load_image
from signseg_core.neurons.response_files import (
    METADATA_COLUMNS,
    check_image_files,
    parse_csv,
    parse_npz,
)
from signseg_core.store import CODE_VERSION, ResultStore, default_store

__all__ = ["NeuronDataError", "NeuronDataset", "dataset_features", "image_set_digest",
           "load_neuron_data"]

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
        import pandas as pd  # deferred: pandas (~0.2 s) serves this table only

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
        Listing every problem: missing columns or arrays, an empty file, non-numeric, NaN,
        infinite or too large responses, duplicate (image, neuron) rows, conflicting metadata for
        a neuron, image names outside the image folder, image files missing, truncated, too small
        or too large, neurons with fewer than ``min_images`` images.
    """
    if isinstance(min_images, bool) or not isinstance(min_images, int) or min_images < 1:
        raise ValueError(f"min_images must be an int >= 1, got {min_images!r}")
    path = Path(path).expanduser()
    folder = Path(image_dir).expanduser() if image_dir is not None else path.parent
    if path.is_dir():
        raise NeuronDataError(path, [f"{path} is a folder, not a file: give the responses file "
                                     "(.csv or .npz) itself"])
    if not path.is_file():
        raise NeuronDataError(path, [f"file not found: {path}"])
    if not folder.is_dir():
        problem = "is a file, not a folder" if folder.exists() else "not found"
        raise NeuronDataError(path, [f"image folder {problem}: {folder}"])
    suffix = path.suffix.lower()
    if suffix == ".csv":
        parsed = parse_csv(path)
    elif suffix == ".npz":
        parsed = parse_npz(path)
    else:
        raise ValueError(f"unknown neuron data format {suffix!r} of {path}; use .csv or .npz")
    problems, names, where, neurons, responses, meta = parsed
    if names:
        problems += check_image_files(folder, names, where)
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
