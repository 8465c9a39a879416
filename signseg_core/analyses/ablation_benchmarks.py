"""Benchmarks under whole-readout ablation: one trunk pass per batch, every condition scored,
decisions stored chunk by chunk so an interrupted evaluation resumes (paper Figs 16, 17).

An evaluation walks a checked, sorted list of dataset items in fixed chunks. Each chunk's result
(an ``(items, conditions)`` int16 array of decisions) is one store entry under a
:class:`ChunkKey`: the model's weight fingerprint, the dataset's fingerprint (file list, sizes,
mtimes), the ablation grid, the chunk's place and size, any option and ``store.CODE_VERSION``. A
chunk is computed whole or not stored at all, so a run stopped anywhere (Ctrl-C, Cancel, a crash)
leaves only whole chunks, and the next run computes only the rest. Stored results never depend on
the batch size or the device beyond float rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from signseg_core.ablation import (
    score_whole_readout,
    whole_readout_ablation,
    whole_readout_conditions,
)
from signseg_core.checks import check_int
from signseg_core.conditions import DEFAULT_ALPHAS, SIGNS
from signseg_core.errors import SignsegError, UnknownNameError
from signseg_core.jobs import JobCancelled
from signseg_core.models.registry import load_model, registry
from signseg_core.models.zoo import ZooModel
from signseg_core.store import CODE_VERSION, ResultStore

log = logging.getLogger(__name__)

__all__ = [
    "AblationGrid",
    "ChunkKey",
    "ModelSkipped",
    "condition_columns",
    "condition_index",
    "evaluate_in_chunks",
    "family_members",
    "logits_of_images",
    "models_or_reasons",
]

#: A chunk's decisions: ``decide(items, stack) -> (len(items), conditions)`` integer array.
DecideFn = Callable[[Sequence, Tensor], np.ndarray]


@dataclass(frozen=True)
class AblationGrid:
    """The whole-readout conditions an evaluation scores: every alpha for each sign, the
    ``alpha = 0`` control once (:func:`~signseg_core.ablation.whole_readout_conditions`)."""

    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    signs: tuple[str, ...] = SIGNS

    def __post_init__(self):
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        object.__setattr__(self, "signs", tuple(self.signs))
        self.conditions()  # validates alphas and signs, one sentence each

    def conditions(self) -> tuple[tuple[str, float], ...]:
        return whole_readout_conditions(self.alphas, self.signs)


@dataclass(frozen=True)
class ChunkKey:
    """The store key of one chunk of one benchmark's decisions under a grid."""

    benchmark: str  # "cue-conflict", "in9/<variant>", "bg-challenge"
    model: str
    model_fingerprint: str
    dataset_fingerprint: str
    conditions: tuple[tuple[str, float], ...]
    chunk: int
    chunk_size: int
    options: tuple[tuple[str, object], ...] = ()
    code_version: str = CODE_VERSION


@dataclass(frozen=True)
class ModelSkipped:
    """A model of a family that could not be evaluated, with the one sentence saying why."""

    name: str
    reason: str


@dataclass
class _Progress:
    """Counts items done for tqdm and a job's ``progress(done, total, message)``."""

    total: int
    label: str
    report: Callable[..., None] | None
    quiet: bool
    done: int = 0
    bar: object = field(default=None)

    def __post_init__(self):
        self.bar = tqdm(total=self.total, desc=self.label, unit="img", disable=self.quiet,
                        leave=False)

    def advance(self, n: int, how: str) -> None:
        self.done += n
        self.bar.update(n)
        if self.report is not None:
            self.report(self.done, self.total, f"{self.label}: {self.done}/{self.total} ({how})")

    def close(self) -> None:
        self.bar.close()


def logits_of_images(model: ZooModel, images: Sequence[Tensor] | Tensor, stack: Tensor) -> Tensor:
    """Logits ``(N, conditions, classes)`` of images in [0, 1]: a batch ``(N, 3, H, W)``, or a
    list of ``(3, H, W)`` of any sizes, each then preprocessed alone (its own crop and resize);
    one trunk pass scores the batch and every condition reads its features."""
    with torch.inference_mode():
        if isinstance(images, Tensor):
            batch = model.preprocess(images)
        else:
            batch = torch.cat([model.preprocess(im[None]) for im in images])
        features = model.trunk(batch)
        return score_whole_readout(features, stack, model.readout.bias)


def readout_stack(model: ZooModel, grid: AblationGrid) -> Tensor:
    """The ``(conditions, 1000, in)`` ablated readouts of ``model``, on its device."""
    if model.n_classes != 1000:
        raise SignsegError(f"{model.name} has {model.n_classes} readout units; the benchmarks map "
                           "the 1000 ImageNet logits to their categories")
    return whole_readout_ablation(model.readout.weight, grid.conditions())


def evaluate_in_chunks(
    model: ZooModel, items: Sequence, decide: DecideFn, *, benchmark: str,
    dataset_fingerprint: str, grid: AblationGrid, store: ResultStore | None,
    chunk_size: int = 256, options: tuple[tuple[str, object], ...] = (),
    progress: Callable[..., None] | None = None, should_stop: Callable[[], bool] | None = None,
    quiet: bool = True,
) -> np.ndarray:
    """Decisions ``(len(items), conditions)`` int16 over a dataset, chunk by chunk, resumable.

    Parameters
    ----------
    model : ZooModel with a 1000-way readout; everything runs on its device.
    items : the dataset's checked items in a fixed order (the chunks are slices of it).
    decide : ``decide(chunk_items, stack)`` → ``(len(chunk_items), C)`` integers.
    benchmark, dataset_fingerprint, grid, chunk_size, options : enter each :class:`ChunkKey`.
    store : where chunks are read from and put; None computes without storing.
    progress : a job's ``progress(done, total, message)``; a tqdm bar too unless ``quiet``.
    should_stop : checked before each chunk: True raises :class:`~signseg_core.jobs.JobCancelled`
        (the chunks already stored stay).
    """
    chunk_size = check_int("chunk_size", chunk_size, low=1)
    conditions = grid.conditions()
    n = len(items)
    out = np.zeros((n, len(conditions)), dtype=np.int16)
    stack: Tensor | None = None  # built only when a chunk must be computed
    bar = _Progress(n, f"{model.name} {benchmark}", progress, quiet)
    try:
        for chunk, start in enumerate(range(0, n, chunk_size)):
            if should_stop is not None and should_stop():
                raise JobCancelled(f"{benchmark} on {model.name} cancelled; "
                                   f"{start} of {n} items are stored and will not be recomputed")
            part = items[start:start + chunk_size]
            key = ChunkKey(benchmark, model.name, model.fingerprint, dataset_fingerprint,
                           conditions, chunk, chunk_size, tuple(options))
            entry = store.get(key) if store is not None else None
            stored = entry[0].get("decisions") if entry is not None else None
            if stored is not None and stored.shape == (len(part), len(conditions)):
                out[start:start + len(part)] = stored
                bar.advance(len(part), "stored")
                continue
            if stack is None:
                stack = readout_stack(model, grid)
            decisions = np.asarray(decide(part, stack), dtype=np.int16)
            if store is not None:
                store.put(key, {"decisions": decisions}, meta={"model": model.name})
            out[start:start + len(part)] = decisions
            bar.advance(len(part), "computed")
    finally:
        bar.close()
    return out


def condition_columns(grid: AblationGrid) -> list[tuple[str, float, bool]]:
    """One ``(sign, alpha, is_control)`` per curve point: the control is drawn at alpha 0 of
    every sign of the grid; returned with the column of the decisions each point reads."""
    rows = []
    for sign, alpha in grid.conditions():
        if sign == "control":
            rows += [(s, 0.0, True) for s in grid.signs]
        else:
            rows.append((sign, alpha, False))
    return rows


def condition_index(grid: AblationGrid, sign: str, alpha: float, control: bool) -> int:
    """The column of :meth:`AblationGrid.conditions` that a :func:`condition_columns` row reads."""
    return grid.conditions().index(("control", 0.0) if control else (sign, alpha))


def family_members(family: str = "robust") -> list[str]:
    """The zoo's members of a model family, in order: ``"robust"`` is the ResNet50 ε series
    (``resnet50`` at ε = 0, then ``resnet50_robust_linf_{0.5,1,2,4,8}``), by ε."""
    if family != "robust":
        raise ValueError(f"unknown model family {family!r}; choose from ['robust']")
    entries = [(e.eps, name) for name, e in registry().items() if e.eps is not None]
    return [name for _, name in sorted(entries)]


def models_or_reasons(names: Sequence[str], *, device: str | torch.device = "cpu",
                      weights: str | None = None):
    """Load each model in turn: yields a :class:`ZooModel`, or a :class:`ModelSkipped` with the
    one sentence why (weights missing, no readout), so a family runs over the members that are
    here. ``weights`` (a checkpoint) applies to one model only, and a checkpoint that does not load
    (missing, of another architecture) raises its one sentence instead of being skipped."""
    if weights is not None and len(names) != 1:
        raise ValueError("--weights is a checkpoint of one network: name exactly one model with it")
    for name in names:
        try:
            model = load_model(name, device=device, weights=weights)
            if not model.has_readout:
                raise SignsegError(f"{name} has no readout layer ({model.no_readout})")
        except UnknownNameError:
            raise  # a typo, not a member that is absent here
        except (SignsegError, FileNotFoundError) as exc:
            if weights is not None:
                raise  # the user's own checkpoint: its sentence is the answer, not a skip
            log.warning("skipping %s: %s", name, exc)
            yield ModelSkipped(name, str(exc))
            continue
        yield model
