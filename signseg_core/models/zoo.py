"""The model zoo: one ``ZooModel`` per network, whatever its origin.

A ``ZooModel`` is read-only once built (models are shared across dashboard sessions): it takes
images in [0, 1] at any size, resizes and normalises them itself, and exposes the readout (the
final ``nn.Linear``, pre-softmax) separately from the ``trunk`` that computes what the readout
reads, so that ablated readout rows can score many conditions from one backbone pass.

A network without a readout (a conv trunk such as ``alexnet_conv``) is a ``ZooModel`` too, built
with ``no_readout`` saying why: its layers, weights and preprocessing serve the Dale pages and
gradient visualization, and every readout-only member (``readout``, ``features``, calling it)
raises :class:`NoReadoutError` with that sentence. Layers its architecture has but its weights
lack are listed in ``absent_layers``; :func:`note_absent_layers` adds them to a Dale table.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from signseg_core.conditions import check_unit
from signseg_core.errors import SignsegError
from signseg_core.models.checkpoints import state_fingerprint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Images may exceed [0, 1] by this much (resampling overshoot) before we call them wrong.
_RANGE_SLACK = 1e-3


class NoReadoutError(SignsegError, ValueError):
    """A readout-only feature (ablation, sweeps, evolution, similarity) was asked of a network
    that has no readout layer; the message says which network, why, and what to use instead."""


def no_readout_message(name: str, why: str) -> str:
    """The one sentence of :class:`NoReadoutError` for network ``name`` (``why``: the reason)."""
    return (f"{name} has no readout layer ({why}); the ablation explorer and sweeps need one "
            "— use the Dale pages")


@dataclass(frozen=True)
class AbsentLayer:
    """A layer of a network's architecture whose weights this network does not have.

    ``name`` is its module name in the full architecture (e.g. ``"classifier.1"``, fc6),
    ``kind`` ``"conv"`` or ``"linear"``, ``in_channels``/``out_channels`` its sizes and ``note``
    one sentence saying what is missing because of it.
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    note: str


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) picks CUDA when available, else CPU; anything else is taken as is."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as exc:  # torch's message lists every backend; one sentence instead
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type not in ("cpu", "cuda", "mps"):  # meta, xla, ...: nothing here computes there
        raise ValueError(f"device {str(device)!r} cannot run signseg; use auto, cpu, cuda or "
                         "cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but this machine has no CUDA device")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} was asked for, but this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for, but this machine has no Apple GPU")
    return device


def find_readout(module: nn.Module) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` registered in ``module``: the readout of every zoo network."""
    found = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(module).__name__} has no nn.Linear readout")
    return found[-1]


def _replace_submodule(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def shared_copy(module: nn.Module) -> nn.Module:
    """A structural copy of ``module`` whose parameters and buffers are the same tensors."""
    memo = {id(t): t for t in module.parameters()}
    memo.update({id(t): t for t in module.buffers()})
    return copy.deepcopy(module, memo)


def load_image(path) -> Tensor:
    """One image file as a float32 RGB tensor ``(3, H, W)`` in [0, 1] (any size, any mode)."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def check_images(images: Tensor) -> Tensor:
    """Validate a batch of images ``(N, 3, H, W)`` in [0, 1]; return it as floating point."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0 or images.shape[2] < 2 or images.shape[3] < 2:
        raise ValueError(f"images must be non-empty and at least 2x2 px, got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in [0, 1], got dtype {images.dtype}")
    # One reduction, one sync: NaN, inf and range together.
    lo, hi = torch.aminmax(images.detach())
    lo, hi = float(lo), float(hi)
    if lo != lo or hi != hi:
        raise ValueError("images contain NaN")
    if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        raise ValueError(f"images must be in [0, 1]; got values from {lo:.4g} to {hi:.4g}")
    return images


@dataclass(eq=False)
class ZooModel:
    """A classifier with its preprocessing, readout and identity.

    Calling it on images ``(N, 3, H, W)`` in [0, 1] returns logits ``(N, n_classes)``.
    """

    name: str
    module: nn.Module
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...]
    trained: bool
    weights_source: str
    top1: float | None = None
    arch: str = ""
    description: str = ""
    #: Why this network has no readout layer; "" when it has one (its last ``nn.Linear``).
    no_readout: str = ""
    #: Layers of the architecture whose weights this network lacks (see :class:`AbsentLayer`).
    absent_layers: tuple[AbsentLayer, ...] = ()
    trunk: nn.Module = field(init=False, repr=False)
    readout_name: str = field(init=False)
    _readout: nn.Linear | None = field(init=False, repr=False, default=None)
    _norm: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.module.eval().requires_grad_(False)
        self.trunk = shared_copy(self.module)
        if not self.has_readout:
            self.readout_name = ""
            self.trunk.eval()
            return
        self.readout_name, self._readout = find_readout(self.module)
        if self._readout.out_features != len(self.class_names):
            raise ValueError(
                f"{self.name}: readout has {self._readout.out_features} units "
                f"but {len(self.class_names)} class names were given"
            )
        _replace_submodule(self.trunk, self.readout_name, nn.Identity())
        self.trunk.eval()

    @property
    def has_readout(self) -> bool:
        """Whether the network ends in a readout layer (False for conv trunks)."""
        return not self.no_readout

    @property
    def readout(self) -> nn.Linear:
        """The readout layer (the last ``nn.Linear``); :class:`NoReadoutError` when there is none."""
        if self._readout is None:
            raise NoReadoutError(no_readout_message(self.name, self.no_readout))
        return self._readout

    # -- identity ---------------------------------------------------------------------------
    @cached_property
    def fingerprint(self) -> str:
        """Hex digest of every weight and buffer: two models score alike iff this is equal."""
        return state_fingerprint(self.module)

    @property
    def device(self) -> torch.device:
        """Where the weights are (those of the first parameter; a zoo model sits on one device)."""
        return next(self.module.parameters()).device

    @property
    def n_classes(self) -> int:
        return self.readout.out_features

    @property
    def n_features(self) -> int:
        return self.readout.in_features

    # -- computation ------------------------------------------------------------------------
    def preprocess(self, images: Tensor, *, validate: bool = True) -> Tensor:
        """Images in [0, 1], any size → the network's normalised input ``(N, 3, S, S)``.

        Non-square images are centre-cropped to a square first, then resized (bilinear,
        antialiased) to ``input_size``. ``validate=False`` skips the range/NaN check (one host
        sync) for inner loops whose images come from a generator that guarantees [0, 1].
        """
        if validate:
            images = check_images(images)
        images = images.to(self.device)
        h, w = images.shape[-2:]
        if h != w:
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            images = images[..., top : top + side, left : left + side]
        if images.shape[-1] != self.input_size:
            images = F.interpolate(
                images,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        mean, std = self._normalisation(images)
        return (images - mean) / std

    def _normalisation(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``mean`` and ``std`` as ``(1, 3, 1, 1)`` tensors on ``like``'s device and dtype.

        Built once per (device, dtype), not on every call, and outside inference mode so that a
        gradient pass (gradvis) may use tensors first made during a no-grad scoring pass.
        """
        key = (like.device, like.dtype)
        if key not in self._norm:
            with torch.inference_mode(False):
                self._norm[key] = tuple(
                    torch.tensor(v, device=like.device, dtype=like.dtype).view(1, 3, 1, 1)
                    for v in (self.mean, self.std)
                )
        return self._norm[key]

    def features(self, images: Tensor, *, validate: bool = True) -> Tensor:
        """The activations the readout reads, ``(N, n_features)``; :class:`NoReadoutError` for
        a network without a readout."""
        if not self.has_readout:
            raise NoReadoutError(no_readout_message(self.name, self.no_readout))
        return self.trunk(self.preprocess(images, validate=validate))

    def logits_from_features(self, features: Tensor) -> Tensor:
        return self.readout(features)

    def __call__(self, images: Tensor) -> Tensor:
        """Pre-softmax logits ``(N, n_classes)``."""
        return self.readout(self.features(images))

    def readout_row(self, unit: int) -> tuple[Tensor, Tensor]:
        """One unit's input weights ``(n_features,)`` and bias (a 0-d tensor); copies."""
        unit = check_unit(unit, self.n_classes)
        bias = self.readout.bias
        b = bias[unit].detach().clone() if bias is not None else torch.zeros((), device=self.device)
        return self.readout.weight[unit].detach().clone(), b

    # -- structure --------------------------------------------------------------------------
    @cached_property
    def layers(self) -> "OrderedDict[str, nn.Module]":
        """The Conv2d and Linear layers in the order a forward pass runs them.

        Found with one dummy forward pass whose hooks are removed even if it fails; layers that
        an eval-mode pass never runs (e.g. Inception's auxiliary head) are left out.
        """
        order: list[str] = []
        handles = []
        for name, mod in self.module.named_modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                handles.append(mod.register_forward_hook(lambda *_, n=name: order.append(n)))
        try:
            dummy = torch.zeros(1, 3, self.input_size, self.input_size, device=self.device)
            with torch.no_grad():
                self.module(dummy)
        finally:
            for h in handles:
                h.remove()
        modules = dict(self.module.named_modules())
        seen: OrderedDict[str, nn.Module] = OrderedDict()
        for name in order:
            seen.setdefault(name, modules[name])
        return seen

    def layer(self, name: str) -> nn.Module:
        """One named conv/linear layer; a clear error lists the choices."""
        if name not in self.layers:
            names = list(self.layers)
            raise ValueError(f"unknown layer {name!r} of {self.name}; choose from {names[:10]}...")
        return self.layers[name]

    def info(self) -> dict:
        """A plain summary for tables and JSON."""
        return {
            "name": self.name,
            "arch": self.arch,
            "trained": self.trained,
            "weights": self.weights_source,
            "input_size": self.input_size,
            "n_features": self.n_features if self.has_readout else None,
            "n_classes": self.n_classes if self.has_readout else None,
            "top1": self.top1,
            "fingerprint": self.fingerprint,
            "device": str(self.device),
        }


def note_absent_layers(table: pd.DataFrame, model: ZooModel) -> pd.DataFrame:
    """``table`` (a Dale table: :func:`signseg_core.signs.layer_summary` or
    :func:`~signseg_core.signs.compare_trained_untrained` of ``model``) with one row per
    :attr:`ZooModel.absent_layers` entry after the others, so a missing layer is said, not
    silently left out.

    A note row gives the layer's name, kind, sizes and ``n_outgoing`` (its ``out_channels``),
    NaN for every measured value, <NA> for counts, and its sentence in ``note`` (a ``note``
    column is added, empty for the measured layers, when the table has none). A model without
    absent layers gets ``table`` back unchanged.
    """
    if not model.absent_layers:
        return table
    out = table.copy()
    if "note" not in out.columns:
        out["note"] = ""
    rows = []
    for layer in model.absent_layers:
        known = {"layer": layer.name, "kind": layer.kind, "in_channels": layer.in_channels,
                 "out_channels": layer.out_channels, "groups": 1,
                 "n_outgoing": layer.out_channels, "hist": [], "note": layer.note}
        rows.append({c: known.get(c, np.nan) for c in out.columns})
    counts = [c for c in ("in_channels", "out_channels", "groups", "n_outgoing", "n_below_half")
              if c in out.columns]
    out = pd.concat([out, pd.DataFrame(rows, columns=out.columns)], ignore_index=True)
    out[counts] = out[counts].astype("Int64")
    return out
