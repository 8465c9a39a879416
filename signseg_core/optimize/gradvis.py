"""Gradient feature visualization of intermediate channels (paper section 4.5, appendix A.3).

Each requested channel gets its own image, optimised by Adam to raise the channel's mean
activation, as the paper did with Lucent: a full-spectrum Fourier parameterization with 1/f
scaling and decorrelated colour (``param="fft"``; or the low-frequency
:class:`~signseg_core.generators.catalog.FourierGenerator`, ``param="fourier"``), and random jitter,
scale and rotation applied to every image at every step. Many channels (e.g. the top-k and bottom-k
sign-consistent senders of a layer) run together in one batch, one image per channel.

Each image draws its start and transforms from its own generator seeded by (seed, channel), and
the network is in eval mode, so a channel's image does not depend on the other channels in its
batch (up to float rounding). The shared model is never touched, not even by a hook (hooks go on
a copy sharing its weights), and only the images get gradients.

``site="output"`` visualises what a layer computes (before normalisation or activation);
``site="input"`` what it reads, i.e. exactly the sender channels that
:func:`signseg_core.signs.rank_channels` ranks for it (after the previous activation, so a channel
that is zero everywhere on the start image cannot move).

Example::

    model = load_model("efficientnet_lite0")
    pos, neg = extreme_sender_channels(model.layer("_blocks.2._project_conv"), k=4)
    result = visualize_channels(model, "_blocks.2._project_conv", pos + neg, site="input")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from signseg_core.checks import check_int
from signseg_core.generators.catalog import colour_matrix, decorrelate_colour, make_generator
from signseg_core.models.zoo import ZooModel, shared_copy
from signseg_core.optimize.layer_capture import SITES, capture_layer
from signseg_core.signs import rank_channels

__all__ = ["GradVisConfig", "GradVisResult", "affine_matrices", "channel_objective",
           "draw_transforms", "extreme_sender_channels", "layer_channels", "transform_images",
           "visualize_channels"]

PARAMS = ("fft", "fourier")
# Lucent's defaults: scales 0.9..1.1, rotations -10..10 degrees with 0 weighted six times.
LUCENT_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
LUCENT_ROTATIONS = tuple(float(d) for d in range(-10, 11)) + (0.0,) * 5
_FFT_INIT_STD, _FFT_MAGIC = 0.01, 4.0  # Lucent's fft_image: sd of the start, divisor of the image


@dataclass(frozen=True)
class GradVisConfig:
    """Options of a gradient visualization; everything besides model, layer and channels.

    Parameters
    ----------
    steps : int >= 1; lr : float > 0
        Adam's number of steps and learning rate (Lucent: 0.05).
    image_size : int >= 8
        Side S of the optimised image in pixels (>= 26 for ``param="fourier"``); the model's
        preprocessing resizes it to the network's input size.
    param : {"fft", "fourier"}
        ``"fft"``: every frequency of an S x S image, amplitudes scaled by 1 / f**decay (Lucent's
        ``fft_image``). ``"fourier"``: the Fourier generator (|f| <= 12 cycles, smoother).
    decay : float >= 0
        Spectrum decay of ``"fft"`` (Lucent: 1.0).
    decorrelate : bool
        ``"fft"`` only: mix channels through ImageNet's colour correlation before the sigmoid.
        The Fourier generator always decorrelates.
    pad, jitter : int >= 0
        Grey (0.5) border added around the image before the transforms, and the largest random
        shift (uniform over the integers in [-jitter, jitter]), both in pixels.
    scales, rotate_degrees : tuple of float
        Choices of the random scale (> 0) and rotation (degrees), drawn uniformly per step.
    seed : int >= 0
        With the channel index, seeds every image's start and transforms.
    """

    steps: int = 128
    lr: float = 0.05
    image_size: int = 128
    param: str = "fft"
    decay: float = 1.0
    decorrelate: bool = True
    pad: int = 6
    jitter: int = 6
    scales: tuple[float, ...] = LUCENT_SCALES
    rotate_degrees: tuple[float, ...] = LUCENT_ROTATIONS
    seed: int = 0

    def __post_init__(self):
        for name, low in (("steps", 1), ("image_size", 8), ("pad", 0), ("jitter", 0),
                          ("seed", 0)):
            check_int(name, getattr(self, name), low=low)
        for name, strict in (("lr", True), ("decay", False)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0 or (strict and value == 0):
                raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} 0, "
                                 f"got {value!r}")
        if self.param not in PARAMS:
            raise ValueError(f"param {self.param!r}; choose from {PARAMS}")
        if not isinstance(self.decorrelate, bool):
            raise ValueError(f"decorrelate must be True or False, got {self.decorrelate!r}")
        if self.param == "fourier" and (not self.decorrelate or self.image_size < 26):
            raise ValueError(f"param='fourier' needs decorrelate=True (the generator always "
                             f"decorrelates) and image_size >= 26; got decorrelate="
                             f"{self.decorrelate}, image_size={self.image_size}")
        for name, positive in (("scales", True), ("rotate_degrees", False)):
            values = getattr(self, name)
            try:
                values = tuple(float(v) for v in values)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a sequence of numbers, got {values!r}") from None
            if not values or not all(math.isfinite(v) and (v > 0 or not positive) for v in values):
                need = "finite numbers > 0" if positive else "finite numbers"
                raise ValueError(f"{name} must be a non-empty sequence of {need}, got {values!r}")
            object.__setattr__(self, name, values)

    def to_dict(self) -> dict:
        """Plain dict of the options, for cache keys."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class GradVisResult:
    """Images and objectives of one :func:`visualize_channels` call; tensors on the CPU.

    Attributes
    ----------
    layer, site : str
    channels : tuple of int (N,)
    images : Tensor (N, 3, S, S), float32 in [0, 1]
        The final images, untransformed.
    initial_objective, final_objective : Tensor (N,), float32
        Mean activation of each image's channel on the start and the final image (untransformed).
    trajectory : Tensor (steps_run, N), float32
        The objective of the transformed images at each step, before its update.
    steps_run : int; cancelled : bool; config : GradVisConfig
    """

    layer: str
    site: str
    channels: tuple[int, ...]
    images: Tensor
    initial_objective: Tensor
    final_objective: Tensor
    trajectory: Tensor
    steps_run: int
    cancelled: bool
    config: GradVisConfig = field(repr=False)

    def uint8(self) -> np.ndarray:
        """The images as uint8 ``(N, S, S, 3)``."""
        return (self.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def arrays(self) -> dict[str, np.ndarray]:
        """Numpy arrays for a :class:`~signseg_core.store.ResultStore` entry."""
        named = ("initial_objective", "final_objective", "trajectory")
        return {"images": self.uint8(), "channels": np.asarray(self.channels, dtype=np.int64),
                **{name: getattr(self, name).numpy() for name in named}}


# -- objective and hooks -----------------------------------------------------------------------

def channel_objective(activations: Tensor, channels: Tensor) -> Tensor:
    """Mean activation of each image's own channel: ``activations[i, channels[i]]`` (N,).

    ``activations``: Tensor (N, C, H, W) (averaged over space) or (N, C); ``channels``: integer
    Tensor (N,), image i is scored on channel ``channels[i]``.
    """
    if activations.ndim not in (2, 4) or channels.shape != activations.shape[:1]:
        raise ValueError(f"need activations (N, C, H, W) or (N, C) and channels (N,); got "
                         f"{tuple(activations.shape)} and {tuple(channels.shape)}")
    picked = activations[torch.arange(len(channels), device=activations.device),
                         channels.to(activations.device)]
    return picked.mean(dim=(1, 2)) if picked.ndim == 3 else picked


def layer_channels(layer: nn.Module, site: str = "output") -> int:
    """Number of channels a Conv2d or Linear layer emits (``"output"``) or reads (``"input"``)."""
    if site not in SITES:
        raise ValueError(f"site {site!r}; choose from {SITES}")
    if isinstance(layer, nn.Conv2d):
        return layer.out_channels if site == "output" else layer.in_channels
    if isinstance(layer, nn.Linear):
        return layer.out_features if site == "output" else layer.in_features
    raise ValueError(f"expected an nn.Conv2d or nn.Linear layer, got {type(layer).__name__}")


def extreme_sender_channels(layer: nn.Module, *, k: int) -> tuple[list[int], list[int]]:
    """The k most positive and the k most negative sender channels of a layer (paper A.3).

    Ranked by :func:`~signseg_core.signs.rank_channels` on the layer's weight; visualise them with
    ``site="input"``. Returns ``(positive, negative)``, each most extreme first.
    """
    n = layer_channels(layer, "input")
    k = check_int("k", k, low=1)
    if 2 * k > n:
        raise ValueError(f"k={k} asks for {2 * k} channels; the layer has {n} sender channels")
    order = rank_channels(layer.weight, groups=getattr(layer, "groups", 1))["channel"].tolist()
    return order[:k], order[::-1][:k]


# -- parameterizations and transforms ----------------------------------------------------------

def _fft_scale(size: int, decay: float) -> Tensor:
    """Lucent's spectrum scale 1 / max(f, 1/size)**decay, f in cycles per pixel: (S, S//2+1)."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    return 1.0 / torch.sqrt(fx**2 + fy**2).clamp_min(1.0 / size) ** decay


def _make_param(config: GradVisConfig, gens: list[torch.Generator], device: torch.device
                ) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """The tensor to optimise (one row per image) and the function that renders it in [0, 1]."""
    size = config.image_size
    if config.param == "fourier":
        generator = make_generator("fourier", size=size, device=device)
        start = torch.stack([torch.randn(generator.dim, generator=g) for g in gens])
        return (start * generator.init_std).to(device), generator

    scale = _fft_scale(size, config.decay).to(device)[..., None]
    colour = colour_matrix().to(device)
    start = torch.stack([torch.randn(3, size, size // 2 + 1, 2, generator=g) for g in gens])

    def render(spectrum: Tensor) -> Tensor:
        image = torch.fft.irfft2(torch.view_as_complex(spectrum * scale), s=(size, size),
                                 norm="ortho") / _FFT_MAGIC
        if config.decorrelate:
            image = decorrelate_colour(image, colour)
        return torch.sigmoid(image)

    return (start * _FFT_INIT_STD).to(device), render


def draw_transforms(config, gens: list[torch.Generator]) -> tuple[Tensor, Tensor, Tensor]:
    """Every step's random transform of each of N images, image i drawn from ``gens[i]`` alone.

    ``config``: a :class:`GradVisConfig` or any object with ``steps``, ``jitter`` (px),
    ``scales`` and ``rotate_degrees`` (the choices, each drawn uniformly). Returns the shift
    (steps, N, 2) in px (x, y), uniform over the integers in [-jitter, jitter], the scale
    (steps, N) and the angle (steps, N) in radians, float64.
    """
    steps, scales = config.steps, torch.tensor(config.scales, dtype=torch.float64)
    angles = torch.tensor(config.rotate_degrees, dtype=torch.float64) * (math.pi / 180)
    draws = torch.stack([torch.cat([
        torch.randint(-config.jitter, config.jitter + 1, (steps, 2), generator=g),
        torch.randint(len(scales), (steps, 1), generator=g),
        torch.randint(len(angles), (steps, 1), generator=g),
    ], 1) for g in gens], 1)  # (steps, N, 4)
    return draws[..., :2].double(), scales[draws[..., 2]], angles[draws[..., 3]]


def affine_matrices(shift: Tensor, scale: Tensor, angle: Tensor, *, size: int, canvas: int
                    ) -> Tensor:
    """``affine_grid`` matrices (..., 2, 3), float32: content at centred pixel x of an S-px image
    lands at ``scale * R(angle) x + shift`` on a P-px canvas (S = size, P = canvas)."""
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    inverse = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    offset = -(2 / size) * (inverse @ shift[..., None])
    return torch.cat([inverse * (canvas / size), offset], -1).float()


def transform_images(images: Tensor, theta: Tensor, canvas: int) -> Tensor:
    """Resample images (N, 3, S, S) onto (N, 3, P, P) through ``theta`` (N, 2, 3) from
    :func:`affine_matrices` (bilinear); what falls outside the image is grey (0.5)."""
    grid = F.affine_grid(theta, [images.shape[0], 3, canvas, canvas], align_corners=False)
    return F.grid_sample(images - 0.5, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) + 0.5


# -- the loop ----------------------------------------------------------------------------------

def _check_channels(channels, n: int, layer_name: str, site: str) -> tuple[int, ...]:
    if isinstance(channels, (int, np.integer)) or not isinstance(channels, Sequence | np.ndarray):
        raise ValueError(f"channels must be a sequence of ints, got {channels!r}")
    if len(channels) == 0:
        raise ValueError("channels must not be empty")
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < n:
            raise ValueError(f"channel {c!r} is not valid for the {site} of layer {layer_name!r}: "
                             f"it has {n} channels, 0 to {n - 1}")
    return tuple(int(c) for c in channels)


def _channel_generator(seed: int, channel: int) -> torch.Generator:
    mixed = int(np.random.SeedSequence([seed, channel]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(mixed)


def visualize_channels(model: ZooModel, layer_name: str, channels: Sequence[int], *,
                       site: str = "output", config: GradVisConfig = GradVisConfig(),
                       progress: Callable[[int, int, Tensor], None] | None = None,
                       should_stop: Callable[[], bool] | None = None) -> GradVisResult:
    """Optimise one image per channel to maximise the channel's mean activation.

    Parameters
    ----------
    model : ZooModel
        Read only; computation runs on ``model.device``. Works under ``torch.no_grad`` and
        ``torch.inference_mode`` too (both are lifted inside).
    layer_name : str
        A name from ``model.layers``.
    channels : sequence of int (N,)
        Channel indices of the layer's output (``site="output"``) or input (``"input"``).
    site : {"output", "input"}
    config : GradVisConfig
    progress : callable(done, total, objective (N,)), optional
        Called after every step with the step's (transformed) objective.
    should_stop : callable() -> bool, optional
        Checked before every step; True ends the run early with ``cancelled=True``.

    Returns
    -------
    GradVisResult
        Images ``(N, 3, S, S)`` in [0, 1] and objectives, on the CPU.
    """
    if not isinstance(config, GradVisConfig):
        raise ValueError(f"config must be a GradVisConfig, got {type(config).__name__}")
    layer = model.layer(layer_name)
    channels = _check_channels(channels, layer_channels(layer, site), layer_name, site)
    device = model.device
    gens = [_channel_generator(config.seed, c) for c in channels]

    # Hooks go on a structural copy sharing the weights: other threads using the shared model
    # meanwhile never meet them.
    private = shared_copy(model.module)
    with torch.inference_mode(False), torch.enable_grad(), \
            capture_layer(private, private.get_submodule(layer_name), site=site) as capture:
        index = torch.tensor(channels, device=device)  # made here: not an inference tensor
        param, render = _make_param(config, gens, device)

        def score(images: Tensor) -> Tensor:
            acts = capture(model.preprocess(images, validate=False))
            return channel_objective(acts, index)

        with torch.no_grad():
            initial = score(render(param)).float().cpu()
        trajectory, cancelled = _ascend(score, render, param, gens, config, progress,
                                        should_stop)
        with torch.no_grad():
            images = render(param)
            final = score(images).float().cpu()
    return GradVisResult(
        layer=layer_name, site=site, channels=channels, images=images.float().cpu(),
        initial_objective=initial, final_objective=final,
        trajectory=torch.stack(trajectory).cpu() if trajectory else torch.empty(0, len(channels)),
        steps_run=len(trajectory), cancelled=cancelled, config=config)


def _ascend(score: Callable[[Tensor], Tensor], render: Callable[[Tensor], Tensor], param: Tensor,
            gens: list[torch.Generator], config: GradVisConfig,
            progress: Callable[[int, int, Tensor], None] | None,
            should_stop: Callable[[], bool] | None) -> tuple[list[Tensor], bool]:
    """Adam steps raising ``score`` of the rendered images, each step through its own random
    transform (drawn from ``gens``); returns each step's objective (N,) and whether
    ``should_stop`` ended the run early."""
    canvas = config.image_size + 2 * config.pad
    thetas = affine_matrices(*draw_transforms(config, gens), size=config.image_size,
                              canvas=canvas).to(param.device)
    optimizer = torch.optim.Adam([param.requires_grad_(True)], lr=config.lr)
    trajectory: list[Tensor] = []
    for step in range(config.steps):
        if should_stop is not None and should_stop():
            return trajectory, True
        optimizer.zero_grad(set_to_none=True)
        objective = score(transform_images(render(param), thetas[step], canvas))
        (-objective.sum()).backward()
        optimizer.step()
        trajectory.append(objective.detach().float())  # on the device: no sync per step
        if progress is not None:
            progress(step + 1, config.steps, trajectory[-1])
    return trajectory, False
