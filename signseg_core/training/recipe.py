"""The training recipe: every number that decides what a run computes, checked before anything runs.

The defaults are the FFCV ResNet-18 16-epoch configuration (``libffcv/ffcv-imagenet``,
``rn18_configs/rn18_16_epochs.yaml``): the paper trained its ReLU and Tanh ResNet18s with FFCV for
16 epochs, and FFCV's table gives that configuration top-5 0.868, the paper's ReLU network 0.870.
What FFCV does that this loop does not (BlurPool, which changes the architecture, so the zoo's
ResNet18 could not load it; progressive resizing 160→192 px; flip test-time augmentation; its
own JPEG loader) is listed in ``docs/training.md``. torchvision's reference recipe
(``references/classification``) is :data:`TORCHVISION_REFERENCE`, one option away.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from signseg_core.errors import SignsegError

SCHEDULES = ("cyclic", "step")
ACTIVATIONS = ("relu", "tanh")

#: torchvision's reference ImageNet recipe for ResNets (``references/classification/README``):
#: lr 0.1 for a batch of 256 (8 GPUs x 32), ×0.1 every 30 of 90 epochs, weight decay 1e-4 on
#: every parameter, no label smoothing.
TORCHVISION_REFERENCE = {"batch_size": 256, "lr": 0.1, "schedule": "step", "step_epochs": 30,
                         "weight_decay": 1e-4, "bn_weight_decay": True, "label_smoothing": 0.0}


class TrainingSetupError(SignsegError, ValueError):
    """A training run cannot start as asked (data layout, architecture, activation, recipe, or an
    out folder holding another run); the message is one sentence saying what and why."""


@dataclass(frozen=True)
class Recipe:
    """How a network is trained (defaults: FFCV's ResNet-18 16-epoch configuration).

    epochs : epochs to train in all; a second run with more continues the first.
    batch_size : images per optimiser step across all workers (split evenly between them).
    lr : the peak learning rate at ``batch_size`` (FFCV: 0.5 at 1024; torchvision 0.1 at 256).
    schedule : ``"cyclic"`` (FFCV: linear from lr/10^4 up to ``lr`` at ``lr_peak_epoch``, then
        linear down to 0 at ``epochs``, set every step) or ``"step"`` (torchvision: ×``gamma``
        every ``step_epochs``).
    weight_decay, bn_weight_decay : L2 coefficient, and whether BatchNorm weights and biases get
        it (FFCV: no; torchvision: yes).
    label_smoothing : of the cross-entropy (FFCV 0.1, torchvision 0).
    image_size : RandomResizedCrop's side in training; validation resizes the short side to
        ``round(image_size * 256 / 224)`` and centre-crops ``image_size`` (224 → 256 → 224).
    max_steps_per_epoch : stop each epoch's training (and validation) after this many batches
        (None: the whole folder); for tests and smoke runs.
    seed : the network's initialisation, the shuffling and the augmentation of every epoch.
    data_workers : DataLoader processes per training worker (0: load in the worker itself).
    """

    epochs: int = 16
    batch_size: int = 1024
    lr: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 5e-5
    bn_weight_decay: bool = False
    label_smoothing: float = 0.1
    schedule: str = "cyclic"
    lr_peak_epoch: float = 2.0
    step_epochs: int = 30
    gamma: float = 0.1
    image_size: int = 224
    max_steps_per_epoch: int | None = None
    seed: int = 0
    data_workers: int = 8

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "step_epochs", "image_size"):
            _positive_int(name, getattr(self, name))
        if self.max_steps_per_epoch is not None:
            _positive_int("max_steps_per_epoch", self.max_steps_per_epoch)
        for name in ("seed", "data_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        for name, low, high in (("lr", 0.0, 100.0), ("momentum", 0.0, 1.0),
                                ("weight_decay", 0.0, 1.0), ("label_smoothing", 0.0, 1.0),
                                ("gamma", 0.0, 1.0), ("lr_peak_epoch", 0.0, 1e6)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or \
                    not low <= value <= high or (name == "lr" and value == 0):
                raise ValueError(f"{name} must be a number in [{low:g}, {high:g}]"
                                 f"{' above 0' if name == 'lr' else ''}, got {value!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {list(SCHEDULES)}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16 px, got {self.image_size}")

    @property
    def val_resize(self) -> int:
        """The short side validation images are resized to before the centre crop."""
        return round(self.image_size * 256 / 224)

    def identity(self) -> dict:
        """What a continued run must share with the run it continues: every field but
        ``epochs`` (how far to go) and ``data_workers`` (how fast to load)."""
        out = dataclasses.asdict(self)
        out.pop("epochs")
        out.pop("data_workers")
        return out

    def lr_factor(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate at optimiser ``step`` (0-based) as a fraction of ``lr``."""
        epoch = step / steps_per_epoch
        if self.schedule == "step":
            return self.gamma ** int(epoch // self.step_epochs)
        peak = min(self.lr_peak_epoch, self.epochs)
        if epoch < peak:
            return 1e-4 + (1 - 1e-4) * epoch / peak
        return max(0.0, (self.epochs - epoch) / max(self.epochs - peak, 1e-12))


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def recipe_from_dict(values: dict) -> Recipe:
    """A :class:`Recipe` from ``values`` (e.g. a ``run.json``); unknown keys are a ValueError."""
    fields = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown recipe field(s) {unknown}; choose from {sorted(fields)}")
    return Recipe(**values)
