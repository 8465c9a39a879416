"""Where the checkpoints of a weight-dynamics run come from, and in which order (paper Fig 25).

A folder's checkpoint files are taken in natural order (``epoch_2`` before ``epoch_10``) and each
name must carry its epoch; a list is taken in the order given. A checkpoint's fingerprint for the
store is its name, size and modification time. The layers analysed are a zoo architecture's
Conv2d/Linear layers, or a state dict's own 2-D and 4-D weights. A dashboard visitor's uploaded
checkpoints become a folder of the server's own (base names only, bounded); the demo is a tiny
network trained here for a few epochs on synthetic images, written once into the cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import Tensor, nn

from signseg_core.checks import check_int, is_plain_relative
from signseg_core.errors import CheckpointError, SignsegError
from signseg_core.models.checkpoints import SAFETENSORS_SUFFIX, TORCH_SUFFIXES, save_state_dict
from signseg_core.models.registry import build_architecture, get_entry
from signseg_core.neurons.uploads import KEEP_UPLOADS, prune_uploads
from signseg_core.paths import cache_dir

__all__ = ["CHECKPOINT_SUFFIXES", "DEMO_EPOCHS", "MAX_UPLOAD_CHECKPOINTS", "CheckpointFile",
           "DynamicsError", "Layer", "arch_layers", "checkpoint_epochs", "demo_images",
           "demo_network", "layer_plan", "list_checkpoints", "natural_key", "resolve_checkpoints",
           "save_checkpoint_upload", "write_demo_checkpoints"]

CHECKPOINT_SUFFIXES = (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX)
#: Most files, and most bytes in all, one upload of checkpoints may hold.
MAX_UPLOAD_CHECKPOINTS = 64
MAX_UPLOAD_BYTES = 4 << 30
#: The demo: epochs trained (checkpoint 0 is the initialisation) and what makes it.
DEMO_EPOCHS = 12
DEMO_VERSION = "v1"


class DynamicsError(SignsegError, ValueError):
    """The checkpoints cannot be analysed (too few, unordered, misnamed): one sentence."""


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint's fingerprint: file name, size in bytes and modification time (ns)."""

    name: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> CheckpointFile:
        stat = path.stat()
        return cls(path.name, int(stat.st_size), int(stat.st_mtime_ns))


def natural_key(name: str) -> tuple:
    """Sort key that orders ``epoch_2`` before ``epoch_10``: digit runs compare as numbers, the
    rest case-insensitively, ties by the name itself."""
    parts = re.split(r"(\d+)", name)
    return (tuple(int(p) if p.isdigit() else p.lower() for p in parts), name)


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The checkpoint files (:data:`CHECKPOINT_SUFFIXES`) directly inside ``folder``, in natural
    order (:func:`natural_key`); hidden files and other files are left out."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DynamicsError(f"the checkpoint folder {folder} does not exist or is not a folder")
    found = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
             and p.suffix.lower() in CHECKPOINT_SUFFIXES]
    if not found:
        raise DynamicsError(f"{folder} holds no checkpoint files "
                            f"({', '.join(CHECKPOINT_SUFFIXES)})")
    return sorted(found, key=lambda p: natural_key(p.name))


def resolve_checkpoints(checkpoints: str | os.PathLike | Sequence) -> tuple[list[Path], bool]:
    """``(paths, from_folder)``: a folder's checkpoints in natural order, or a list as given.

    At least two files, each existing once; a folder's names must each carry their epoch
    (see :func:`checkpoint_epochs`)."""
    from_folder = isinstance(checkpoints, (str, os.PathLike))
    paths = (list_checkpoints(checkpoints) if from_folder
             else [Path(p).expanduser() for p in checkpoints])
    for path in paths:
        if not path.is_file():
            raise DynamicsError(f"the checkpoint {path} does not exist or is not a file")
    seen: dict[Path, Path] = {}
    for path in paths:
        if path.resolve() in seen:
            raise DynamicsError(f"the checkpoint {path} is listed twice")
        seen[path.resolve()] = path
    if len(paths) < 2:
        where = f"{checkpoints} holds only" if from_folder else "only one checkpoint was given:"
        shown = paths[0].name if paths else "none"
        raise DynamicsError(f"weight dynamics need at least two checkpoints (the final one and "
                            f"one before it), but {where} {shown}")
    return paths, from_folder


def checkpoint_epochs(paths: Sequence[Path], *, require_numbers: bool = False
                      ) -> tuple[np.ndarray, str]:
    """Each checkpoint's epoch: the last number in its file stem (``epoch_16.pt`` -> 16) when
    every name has one, else the positions 1..N (refused with ``require_numbers``, as for a
    folder, whose order would otherwise be a guess). Numbers must rise strictly in the given
    order; two files of one epoch (``epoch_3.pt`` and ``epoch_3.safetensors``) are refused."""
    numbers = [re.findall(r"\d+", Path(p).stem) for p in paths]
    if not all(numbers):
        missing = next(Path(p).name for p, n in zip(paths, numbers) if not n)
        if require_numbers:
            raise DynamicsError(f"{missing} carries no epoch number: name each checkpoint with "
                                "its epoch (epoch_1.pt, epoch_2.pt, ...) or list them in order")
        return np.arange(1, len(paths) + 1, dtype=np.float64), "positions"
    epochs = [int(n[-1]) for n in numbers]
    for (a, ea), (b, eb) in zip(zip(paths, epochs), zip(paths[1:], epochs[1:])):
        if eb <= ea:
            what = "carry the same epoch" if eb == ea else "are out of epoch order"
            raise DynamicsError(f"{Path(a).name} (epoch {ea}) and {Path(b).name} (epoch {eb}) "
                                f"{what}: keep one file per epoch, listed in training order")
    return np.asarray(epochs, dtype=np.float64), "file names"



@dataclass(frozen=True)
class Layer:
    """A Conv2d or Linear layer whose input channels are the senders: its state-dict ``key``
    (``"<name>.weight"``) and its convolution ``groups``."""

    name: str
    key: str
    groups: int = 1


@lru_cache(maxsize=8)
def arch_layers(arch: str) -> tuple[tuple[Layer, ...], dict[str, tuple[int, ...]]]:
    """The Conv2d/Linear layers of the zoo architecture ``arch`` (module order) and their
    weights' shapes; built once, untrained, never loaded with weights."""
    net = build_architecture(get_entry(arch), init_weights=False)
    layers, shapes = [], {}
    for name, module in net.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            groups = module.groups if isinstance(module, nn.Conv2d) else 1
            layers.append(Layer(name, f"{name}.weight", groups))
            shapes[f"{name}.weight"] = tuple(module.weight.shape)
    return tuple(layers), shapes


def layer_plan(state: Mapping[str, Tensor], *, arch: str = "", source: str = "the checkpoint"
               ) -> tuple[Layer, ...]:
    """The layers analysed in ``state``: with ``arch``, that architecture's Conv2d/Linear layers
    (with their ``groups``; ``state`` must hold each with its shape); without, every 2-D or 4-D
    floating ``*.weight`` in state-dict order, ``groups = 1`` (a grouped or depthwise conv needs
    ``arch``: a state dict does not record ``groups``)."""
    if arch:
        layers, shapes = arch_layers(arch)
        # the classifier's rows are the training set's classes (a run on 10 classes is still
        # a resnet18): the last Linear layer's first dimension may differ
        head = next((l.key for l in reversed(layers) if len(shapes[l.key]) == 2), None)

        def fits(k: str, s: tuple[int, ...]) -> bool:
            got = tuple(state[k].shape)
            return got == s or (k == head and len(got) == 2 and got[1:] == s[1:])

        bad = [f"{k} (missing)" if k not in state else f"{k} {tuple(state[k].shape)} vs {s}"
               for k, s in shapes.items() if k not in state or not fits(k, s)]
        if bad:
            raise CheckpointError(f"{source} does not fit the architecture {arch}: {len(bad)} of "
                                  f"its {len(shapes)} Conv2d/Linear weights are missing or of "
                                  f"another shape (first: {bad[0]})")
        return layers
    layers = tuple(Layer(k.removesuffix(".weight"), k) for k, t in state.items()
                   if (k == "weight" or k.endswith(".weight")) and t.ndim in (2, 4)
                   and t.is_floating_point())
    if not layers:
        raise CheckpointError(f"{source} holds no Conv2d or Linear weights (2-D or 4-D "
                              "'*.weight' tensors)")
    return layers


def save_checkpoint_upload(files: Sequence[tuple[str, bytes]], *, root: str | Path | None = None,
                           max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Write uploaded checkpoints into a folder of their own; returns the folder.

    Each ``(file name, content)`` keeps only its base name, which must end in one of
    :data:`CHECKPOINT_SUFFIXES`, not start with ``.``, and appear once; at most
    :data:`MAX_UPLOAD_CHECKPOINTS` files and ``max_bytes`` bytes in all. Nothing is read as a
    checkpoint here (the weights-only loader does that later). The folder, ``<root>/<digest>``
    (default root ``<cache>/checkpoint_uploads``), is named by a digest of every name and byte,
    appears at once (written beside it, then renamed) and is reused by an identical upload; only
    the most recently used ones are kept.
    """
    if not files:
        raise DynamicsError("no checkpoints were uploaded")
    if len(files) > MAX_UPLOAD_CHECKPOINTS:
        raise DynamicsError(f"{len(files)} files were uploaded; one run takes at most "
                            f"{MAX_UPLOAD_CHECKPOINTS} checkpoints")
    names, total, digest = set(), 0, hashlib.sha256()
    for name, content in files:
        base = PurePosixPath(str(name).replace("\\", "/")).name
        if (not is_plain_relative(base) or base.startswith(".")
                or Path(base).suffix.lower() not in CHECKPOINT_SUFFIXES):
            raise DynamicsError(f"{name}: not a checkpoint file (take "
                                f"{', '.join(CHECKPOINT_SUFFIXES)})")
        if base in names:
            raise DynamicsError(f"{base} was uploaded twice")
        names.add(base)
        total += len(content)
        if total > max_bytes:
            raise DynamicsError(f"the uploaded checkpoints hold more than {max_bytes:,} bytes")
        digest.update(hashlib.sha256(base.encode() + b"\0" + bytes(content)).digest())
    root = Path(root) if root is not None else cache_dir() / "checkpoint_uploads"
    final = root / digest.hexdigest()[:32]
    if final.is_dir():
        os.utime(final)  # recently used: kept by the pruning
        return final
    tmp = root / f".{final.name}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        for name, content in files:
            (tmp / PurePosixPath(str(name).replace("\\", "/")).name).write_bytes(content)
        try:
            os.replace(tmp, final)
        except OSError:  # another session wrote the same upload first
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune_uploads(root, keep=KEEP_UPLOADS)
    return final


def demo_network() -> nn.Module:
    """The demo's network: three 3x3 convolutions (3 -> 16 -> 32 -> 32) and a 4-way Linear, on
    16-px images; 3 + 16 + 32 + 32 = 83 sender channels."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))


def demo_images(n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` synthetic 16-px images (n, 3, 16, 16) and labels (n,): class ``c`` is a grating at
    ``45 c`` degrees in a colour of its own, at a random phase, plus Gaussian noise (SD 0.5)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    angle = labels.double() * torch.pi / 4
    phase = torch.rand(n, generator=g, dtype=torch.float64) * 2 * torch.pi
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    wave = torch.sin(0.8 * (xx * cos + yy * sin) + phase[:, None, None])
    colours = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.2, 1.0], [1.0, 1.0, 0.2]])
    images = wave.float()[:, None] * colours[labels][:, :, None, None]
    return images + 0.5 * torch.randn(images.shape, generator=g), labels


def write_demo_checkpoints(folder: str | Path | None = None, *, epochs: int = DEMO_EPOCHS,
                           seed: int = 0) -> Path:
    """Train :func:`demo_network` for ``epochs`` epochs (SGD, lr 0.05, momentum 0.9, batches of
    32 of 256 images from :func:`demo_images`) and save ``epoch_0.safetensors`` (the seeded
    initialisation) to ``epoch_<epochs>.safetensors``, each with its training loss and accuracy
    in the file's metadata; returns the folder (default
    ``<cache>/dynamics_demo/<version>-seed<seed>-e<epochs>``, written once, reused after).
    A demonstration that the analysis runs, not ResNet18 on ImageNet."""
    epochs = check_int("epochs", epochs, low=1, high=1000)
    folder = (Path(folder) if folder is not None
              else cache_dir() / "dynamics_demo" / f"{DEMO_VERSION}-seed{seed}-e{epochs}")
    if (folder / f"epoch_{epochs}{SAFETENSORS_SUFFIX}").is_file():
        return folder
    tmp = folder.parent / f".{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        _train_demo(tmp, epochs=epochs, seed=seed)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process wrote it first
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _train_demo(folder: Path, *, epochs: int, seed: int) -> None:
    with torch.random.fork_rng(devices=[]):  # the seed, not the caller's RNG, draws the init
        torch.manual_seed(seed)
        net = demo_network()
    images, labels = demo_images(256, seed=seed + 1)
    order = torch.Generator().manual_seed(seed + 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(epochs + 1):
        for batch in torch.randperm(len(labels), generator=order).split(32) if epoch else ():
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(images[batch]), labels[batch]).backward()
            optimizer.step()
        with torch.no_grad():
            logits = net(images)
        metadata = {"epoch": str(epoch), "demo": DEMO_VERSION,
                    "train_loss": f"{nn.functional.cross_entropy(logits, labels).item():.4f}",
                    "train_accuracy": f"{(logits.argmax(1) == labels).float().mean().item():.4f}"}
        save_state_dict(net.state_dict(), folder / f"epoch_{epoch}{SAFETENSORS_SUFFIX}",
                        metadata=metadata)
