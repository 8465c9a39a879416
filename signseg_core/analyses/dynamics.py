"""Weight dynamics against the Dale index (paper Fig 25), streamed over a network's checkpoints.

The paper: "Convergence rate of outgoing weights measured by cosine similarity to final weights,
as time to reach 90 % of the final similarity. Each dot is one output channel for all layers in
ResNet18 trained over 16 epochs" (Spearman -0.03, p = 0.064, "no obvious correlation"; "high Dale
index channels mature within narrower time windows than more mixed channels").

Channels are :mod:`signseg_core.signs`' senders: for every Conv2d or Linear weight ``W`` of a
layer, channel ``j`` is an input channel of that layer, and its outgoing weights are
``W[:, j]`` (restricted to its group's ``out / groups`` rows for a grouped convolution). For
checkpoint ``k`` with outgoing vector ``w_k`` (every raw kernel entry, ``out / groups x kh x kw``
numbers: the cosine follows the weights themselves, so a kernel whose spatial pattern turns
while its mean stays put still counts as moving) and the final checkpoint's ``w_F``::

    s_k = cos(w_k, w_F) = <w_k, w_F> / (|w_k| |w_F|)           in float64, clipped to [-1, 1]

``s_F = 1`` by definition (not recomputed). The **convergence epoch** is the epoch of the first
checkpoint, in training order, with ``s_k >= threshold * s_F`` (default 0.9; ``>=``, so a
similarity equal to the threshold counts, up to a float64 tolerance of 1e-12); the final
checkpoint always qualifies, so it is at most the last epoch. ``settle_epoch`` is the epoch from
which on every ``s_k`` stays at or above the threshold (later dips count against it). No
interpolation between checkpoints. Edge cases: a channel whose final outgoing weights are all
zero has no direction to converge to: its similarities and epochs are NaN and the statistics
leave it out; a channel all zero at an earlier checkpoint has ``s_k = 0`` there (no part of its
final direction yet). Its final Dale index and fraction of negative weights are
:func:`signseg_core.signs.rank_channels`' (kernels averaged over space first, zeros neither
sign: the paper's definition, A.3).

Streaming: at most two checkpoints are in memory, the final one (read first; only its layer
weights are kept) and the current one (released before the next is read). Every step's
similarities are stored as they are computed (one whole store entry per checkpoint), so an
interrupted run resumes where it stopped, and the assembled result is stored under a key of every
file's name, size and modification time, the threshold, the architecture and
:data:`signseg_core.store.CODE_VERSION`: a second run reads nothing but the store.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from signseg_core.analyses.dynamics_files import (
    CheckpointFile,
    Layer,
    checkpoint_epochs,
    layer_plan,
    resolve_checkpoints,
)
from signseg_core.errors import CheckpointError
from signseg_core.jobs import JobCancelled
from signseg_core.models.checkpoints import load_state_dict_file
from signseg_core.signs import rank_channels
from signseg_core.store import CODE_VERSION, ResultStore

__all__ = ["DEFAULT_THRESHOLD", "DynamicsKey", "FinalCheckpoint", "WeightDynamics",
           "check_threshold", "convergence_epochs", "cosine_similarity", "dynamics_key",
           "sender_vectors", "stored_dynamics", "weight_dynamics"]

DEFAULT_THRESHOLD = 0.9
#: float64 rounding of a cosine of equal vectors is a few ulp; a threshold of 1 must still count.
TOLERANCE = 1e-12
ANALYSIS = "weight-dynamics-v1"
Loader = Callable[[Path], Mapping[str, Tensor]]


@dataclass(frozen=True)
class DynamicsKey:
    """Store key of a whole analysis: every checkpoint in order, the threshold, the
    architecture naming the layers ("" for the state dict's own) and the code version."""

    checkpoints: tuple[CheckpointFile, ...]
    threshold: float
    arch: str = ""
    code_version: str = CODE_VERSION
    analysis: str = ANALYSIS


@dataclass(frozen=True)
class StepKey:
    """Store key of one checkpoint's similarities to the final one (``role="step"``), or of the
    final checkpoint's own channel statistics (``role="final"``, ``checkpoint`` = ``final``)."""

    final: CheckpointFile
    checkpoint: CheckpointFile
    arch: str
    role: str = "step"
    code_version: str = CODE_VERSION
    analysis: str = ANALYSIS


@dataclass(frozen=True)
class WeightDynamics:
    """One network's weight dynamics.

    Attributes
    ----------
    table : DataFrame, one row per channel (layers in plan order, channels ascending):
        ``layer``, ``channel``, ``groups``, ``n_outgoing``, ``dale_index``, ``frac_negative``,
        ``frac_positive``, ``final_norm``, ``convergence_epoch``, ``settle_epoch`` (NaN for a
        channel whose final weights are all zero).
    similarity : ndarray (channels, checkpoints), float64; the last column is 1 (NaN rows: see
        ``table``).
    epochs : ndarray (checkpoints,), float64, strictly increasing.
    files : the checkpoints' file names, in training order.
    threshold : the fraction of the final similarity that counts as converged.
    epoch_source : ``"file names"`` (the last number in each name) or ``"positions"`` (1..N).
    """

    table: pd.DataFrame
    similarity: np.ndarray
    epochs: np.ndarray
    files: tuple[str, ...]
    threshold: float
    epoch_source: str

    def channel_labels(self) -> list[str]:
        """``"layer[channel]"`` per row of :attr:`table`."""
        return [f"{layer}[{c}]" for layer, c in zip(self.table["layer"], self.table["channel"])]


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float in (0, 1], rounded to 6 decimals (so it keys the store stably)."""
    value = float(threshold)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"the threshold must lie in (0, 1], got {threshold!r}")
    return round(value, 6)


def sender_vectors(weight: Tensor, *, groups: int = 1) -> Tensor:
    """Outgoing weights per sender channel: ``(in, out / groups * kh * kw)``, float64.

    Row ``c`` of group ``g = c // (in / groups)`` holds ``W[g*out/groups:(g+1)*out/groups, c %
    (in / groups)]`` flattened, in the channel order of :func:`signseg_core.signs.dale_index`.
    """
    w = weight.detach().to("cpu", torch.float64)
    if w.ndim == 2:
        w = w[:, :, None, None]
    if w.ndim != 4 or w.shape[0] % groups:
        raise ValueError(f"expected a Linear or Conv2d weight with groups={groups}, got shape "
                         f"{tuple(weight.shape)}")
    out, per_group = w.shape[0], w.shape[1]
    w = w.reshape(groups, out // groups, per_group, -1)  # (g, out/g, in/g, kh*kw)
    return w.permute(0, 2, 1, 3).reshape(groups * per_group, -1)


def cosine_similarity(current: Tensor, final: Tensor) -> np.ndarray:
    """Row-wise ``cos(current[i], final[i])`` of float64 matrices ``(channels, n)``, clipped to
    [-1, 1]; NaN where ``final[i]`` is all zero, 0 where only ``current[i]`` is."""
    dot = (current * final).sum(dim=1)
    norms = current.norm(dim=1) * final.norm(dim=1)
    cos = torch.where(norms > 0, dot / torch.where(norms > 0, norms, 1.0), 0.0)
    cos = torch.where(final.norm(dim=1) > 0, cos.clamp(-1.0, 1.0), torch.nan)
    return cos.numpy()


def convergence_epochs(similarity: np.ndarray, epochs: np.ndarray, threshold: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``(first, settle)`` epochs per row of ``similarity`` (channels, checkpoints): the epoch of
    the first checkpoint with ``s >= threshold`` (the paper's convergence epoch), and the epoch
    from which on every ``s`` stays there; NaN for rows whose final similarity is NaN."""
    reached = np.nan_to_num(similarity, nan=-np.inf) >= threshold - TOLERANCE
    reached[:, -1] = True  # s_F = 1 >= any threshold in (0, 1]
    first = epochs[reached.argmax(axis=1)]
    below = ~reached
    last_below = np.where(below.any(axis=1), below.shape[1] - 1 - below[:, ::-1].argmax(axis=1),
                          -1)
    settle = epochs[last_below + 1]
    undefined = np.isnan(similarity[:, -1])
    return np.where(undefined, np.nan, first), np.where(undefined, np.nan, settle)


def dynamics_key(paths: Sequence[Path], *, threshold: float, arch: str = "") -> DynamicsKey:
    """The store key of the analysis of ``paths`` (in training order)."""
    return DynamicsKey(tuple(CheckpointFile.of(Path(p)) for p in paths),
                       check_threshold(threshold), arch)


def default_loader(path: Path) -> Mapping[str, Tensor]:
    """:func:`~signseg_core.models.checkpoints.load_state_dict_file`: weights-only pickles or
    safetensors, a state dict plain or under ``"model"`` / ``"state_dict"``."""
    return load_state_dict_file(path, what=f"the checkpoint {path.name}")


def weight_dynamics(checkpoints: str | os.PathLike | Sequence, *,
                    threshold: float = DEFAULT_THRESHOLD, arch: str = "",
                    store: ResultStore | None = None, loader: Loader | None = None,
                    progress: Callable[..., None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> WeightDynamics:
    """Weight dynamics of one network's checkpoints (paper Fig 25).

    Parameters
    ----------
    checkpoints : a folder (its checkpoint files in natural order; every name must carry its
        epoch) or a list of files in training order; the last is the final checkpoint.
    threshold : fraction of the final similarity that counts as converged, in (0, 1].
    arch : a zoo architecture naming the layers and their ``groups`` ("" : the state dict's own
        2-D/4-D ``*.weight`` tensors, ``groups = 1``).
    store : where step results and the whole result are kept (None: nothing stored).
    loader : reads one file into a state dict (default :func:`default_loader`; tests count
        live loads through it).
    progress : ``progress(done, total, message)`` after each checkpoint.
    should_stop : polled between checkpoints; True raises
        :class:`~signseg_core.jobs.JobCancelled` (steps done so far stay stored).

    Raises
    ------
    DynamicsError, CheckpointError : one sentence naming the file (unreadable, of another
        architecture than the final checkpoint, misnamed, too few).
    """
    paths, from_folder = resolve_checkpoints(checkpoints)
    epochs, source = checkpoint_epochs(paths, require_numbers=from_folder)
    key = dynamics_key(paths, threshold=threshold, arch=arch)
    found = stored_dynamics(store, key) if store is not None else None
    if found is not None:
        if progress is not None:
            progress(len(paths), len(paths), "stored")
        return found
    stop = should_stop or (lambda: False)
    if stop():
        raise JobCancelled("cancelled")
    return _run(paths, key, epochs, source, store=store, loader=loader or default_loader,
                progress=progress or (lambda *a: None), should_stop=stop)


class FinalCheckpoint:
    """The final checkpoint, read on first need and kept: its layers' weights (nothing else) and
    every key's shape, against which each other checkpoint is checked."""

    def __init__(self, path: Path, arch: str, loader: Loader):
        self.path, self.arch, self.loader = path, arch, loader
        self.layers: tuple[Layer, ...] = ()
        self.weights: dict[str, Tensor] | None = None
        self.shapes: dict[str, tuple[int, ...]] = {}

    def read(self) -> FinalCheckpoint:
        if self.weights is None:
            state = self.loader(self.path)
            self.layers = layer_plan(state, arch=self.arch, source=str(self.path))
            self.shapes = {k: tuple(v.shape) for k, v in state.items()}
            self.weights = {layer.key: state[layer.key] for layer in self.layers}
        return self

    def check(self, state: Mapping[str, Tensor], path: Path) -> None:
        """A checkpoint of another architecture than the final one: one sentence naming it."""
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        if shapes != self.shapes:
            diff = sorted(set(shapes) ^ set(self.shapes)) or sorted(
                k for k in shapes if shapes[k] != self.shapes[k])
            raise CheckpointError(
                f"{path} is not a checkpoint of the same network as the final {self.path.name}: "
                f"they differ in {len(diff)} tensor(s), e.g. {diff[0]!r}")

    def channels(self) -> tuple[dict[str, np.ndarray], list[str]]:
        """Per sender channel of every layer: its layer's index, channel, groups, n_outgoing,
        final Dale index, fractions negative and positive, and final outgoing norm."""
        parts: dict[str, list] = {name: [] for name in _CHANNEL_ARRAYS}
        for index, layer in enumerate(self.read().layers):
            weight = self.weights[layer.key]
            ranks = rank_channels(weight, groups=layer.groups).sort_values("channel")
            n = len(ranks)
            parts["layer_index"].append(np.full(n, index))
            parts["channel"].append(ranks["channel"].to_numpy())
            parts["groups"].append(np.full(n, layer.groups))
            parts["n_outgoing"].append(np.full(n, weight.shape[0] // layer.groups))
            for column in ("dale_index", "frac_negative", "frac_positive"):
                parts[column].append(ranks[column].to_numpy(np.float64))
            norm = sender_vectors(weight, groups=layer.groups).norm(dim=1).numpy()
            parts["final_norm"].append(norm)
        return ({k: np.concatenate(v) for k, v in parts.items()},
                [layer.name for layer in self.layers])

    def similarity(self, state: Mapping[str, Tensor]) -> np.ndarray:
        """Every channel's cosine similarity of ``state``'s outgoing weights to the final's."""
        return np.concatenate([
            cosine_similarity(sender_vectors(state[layer.key], groups=layer.groups),
                              sender_vectors(self.weights[layer.key], groups=layer.groups))
            for layer in self.read().layers])


_CHANNEL_ARRAYS = ("layer_index", "channel", "groups", "n_outgoing", "dale_index",
                   "frac_negative", "frac_positive", "final_norm")


def _run(paths: list[Path], key: DynamicsKey, epochs: np.ndarray, source: str, *,
         store: ResultStore | None, loader: Loader, progress: Callable[..., None],
         should_stop: Callable[[], bool]) -> WeightDynamics:
    """Read the final checkpoint (if its channels are not stored), then each other one in turn,
    keeping at most these two; store each step, then the assembled result."""
    total, last = len(paths), key.checkpoints[-1]
    final = FinalCheckpoint(paths[-1], key.arch, loader)
    head_key = StepKey(last, last, key.arch, role="final")
    head = _read(store, head_key)
    if head is None:
        arrays, names = final.channels()
        head = (arrays, {"layers": names})
        if store is not None:
            store.put(head_key, arrays, head[1])
    arrays, meta = head[0], head[1]
    progress(1, total, f"final checkpoint {paths[-1].name}")
    columns = []
    for k, path in enumerate(paths[:-1]):
        if should_stop():
            raise JobCancelled("cancelled")
        step_key = StepKey(last, key.checkpoints[k], key.arch)
        step = _read(store, step_key)
        if step is None or step[0]["similarity"].shape != arrays["channel"].shape:
            final.read()  # the final checkpoint is read first, and once
            state = loader(path)
            final.check(state, path)
            step = ({"similarity": final.similarity(state)}, {})
            del state  # released before the next file is read: two checkpoints at most
            if store is not None:
                store.put(step_key, *step)
        columns.append(step[0]["similarity"])
        progress(k + 2, total, f"epoch {epochs[k]:g} of {epochs[-1]:g}")
    done = np.where(arrays["final_norm"] > 0, 1.0, np.nan)  # s_F = 1 by definition
    similarity = np.column_stack([*columns, done])
    first, settle = convergence_epochs(similarity, epochs, key.threshold)
    result_arrays = {**arrays, "similarity": similarity, "epochs": epochs,
                     "convergence_epoch": first, "settle_epoch": settle}
    result_meta = {**meta, "files": [p.name for p in paths], "epoch_source": source}
    if store is not None:
        store.put(key, result_arrays, result_meta)
    return _result(result_arrays, result_meta, key.threshold)


def _read(store: ResultStore | None, key) -> tuple[dict, dict] | None:
    entry = store.get(key) if store is not None else None
    return None if entry is None else (entry[0], entry[1])


def stored_dynamics(store: ResultStore, key: DynamicsKey) -> WeightDynamics | None:
    """The stored result of ``key`` (:func:`dynamics_key`), or None."""
    entry = _read(store, key)
    return None if entry is None else _result(entry[0], entry[1], key.threshold)


def _result(arrays: dict, meta: dict, threshold: float) -> WeightDynamics:
    names = np.asarray(meta["layers"], dtype=object)
    table = pd.DataFrame({
        "layer": names[arrays["layer_index"].astype(int)] if len(names) else [],
        **{k: arrays[k] for k in _CHANNEL_ARRAYS[1:]},
        "convergence_epoch": arrays["convergence_epoch"],
        "settle_epoch": arrays["settle_epoch"]})
    return WeightDynamics(table=table, similarity=arrays["similarity"], epochs=arrays["epochs"],
                          files=tuple(meta["files"]), threshold=threshold,
                          epoch_source=meta["epoch_source"])
