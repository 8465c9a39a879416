"""Where in an image a response comes from, without gradients (appendix A.1, Figs 21 and 24).

* :func:`perturbation_mask` — the paper's *in vivo* "Feature localization": shuffle the pixels
  inside 30 random 50-px disks, weight each disk by the normalised response change it causes,
  smooth (σ = 30 px) and threshold. ``score_fn`` maps images to responses (a unit's logit, a
  neuron model); :func:`perturbation_stimuli` + :func:`mask_from_responses` split it in two
  for responses recorded elsewhere (a monkey). The disks and perturbed images themselves are
  :mod:`signseg_core.neurons.perturbation`'s.
* :func:`clear_background` / :func:`background_clearing_effect` — Fig. 24: keep the localized
  feature, fill the rest with a uniform value, and measure the response change.
* :func:`mask_overlay` — a uint8 RGB picture of a mask on its image, for display and export.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import binary_erosion, gaussian_filter
from torch import Tensor

from signseg_core.neurons.perturbation import (
    check_geometry,
    check_image,
    disk_mask,
    disk_plan,
    perturbed_copies,
    resolve_geometry,
)

__all__ = [
    "BackgroundClearing", "LocalizationResult", "background_clearing_effect", "clear_background",
    "mask_from_responses", "mask_overlay", "normalized_response_change", "perturbation_mask",
]

ScoreFn = Callable[[Tensor], "Tensor | np.ndarray"]
NORMALIZATIONS = ("max", "none")
FILLS = {"gray": 0.5, "white": 1.0, "black": 0.0}
OVERLAY_STYLES = ("outline", "tint")
_NO_CHANGE = 1e-6  # a smoothed relative change at most this small is float rounding, not a drop


# -- validation helpers ---------------------------------------------------------------------------
def _as_numpy(x) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu()
    return np.asarray(x)


def _as_bool_mask(mask, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(mask, LocalizationResult):
        mask = mask.mask
    m = _as_numpy(mask)
    if m.shape != tuple(shape):
        raise ValueError(f"mask has shape {m.shape} but the image is {tuple(shape)} (H, W)")
    if m.dtype != bool:
        if not np.all((m == 0) | (m == 1)):
            raise ValueError("mask must be boolean (or 0/1); threshold a continuous map first, "
                             "e.g. use LocalizationResult.mask")
        m = m.astype(bool)
    return m


def _scores(score_fn: ScoreFn, images: Tensor, what: str) -> np.ndarray:
    with torch.no_grad():
        out = _as_numpy(score_fn(images)).astype(np.float64)
    if out.shape not in ((len(images),), (len(images), 1)):
        raise ValueError(f"score_fn must return shape ({len(images)},) for {len(images)} images "
                         f"({what}), got {out.shape}")
    return out.reshape(-1)


def normalized_response_change(intact: float, perturbed) -> np.ndarray:
    """``(intact - perturbed) / |intact|``: 0.5 means the response fell by half.

    For positive responses (firing rates) this is the paper's ``(intact - perturbed) / intact``;
    dividing by ``|intact|`` keeps "a drop is positive" for negative responses (logits).
    """
    intact = float(intact)
    p = np.asarray(perturbed, dtype=np.float64)
    if not np.isfinite(intact) or intact == 0.0:
        raise ValueError(f"the intact response is {intact!r}; the normalised response change "
                         "(intact - perturbed) / intact needs a finite, non-zero intact response")
    bad = np.flatnonzero(~np.isfinite(p))
    if bad.size:
        raise ValueError(f"perturbed responses are NaN or infinite for disks {bad[:10].tolist()}")
    return (intact - p) / abs(intact)


# -- the mask -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalizationResult:
    """What :func:`perturbation_mask` returns. Arrays are read-only.

    map : ``(H, W)`` float in [0, 1], the normalised smoothed map; ``mask = map >= threshold``.
    change_map : ``(H, W)`` smoothed normalised response change before normalisation.
    centers : ``(n, 2)`` disk centres (row, col); changes, perturbed : ``(n,)``; intact : float.
    """

    map: np.ndarray
    mask: np.ndarray
    change_map: np.ndarray
    centers: np.ndarray
    changes: np.ndarray
    perturbed: np.ndarray
    intact: float
    diameter: int
    sigma: float
    threshold: float
    normalize: str

    def __post_init__(self):
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown normalize {self.normalize!r}; choose from {NORMALIZATIONS}")
        if not (self.map.shape == self.mask.shape == self.change_map.shape and self.map.ndim == 2):
            raise ValueError("map, mask and change_map must share one (H, W) shape")
        n = len(self.centers)
        if (self.centers.shape != (n, 2) or self.changes.shape != (n,)
                or self.perturbed.shape != (n,)):
            raise ValueError("centers (n, 2), changes (n,) and perturbed (n,) must agree")
        for a in (self.map, self.mask, self.change_map, self.centers, self.changes, self.perturbed):
            a.flags.writeable = False

    @property
    def area_fraction(self) -> float:
        """Fraction of the image inside the mask, in [0, 1]."""
        return float(self.mask.mean())


def _check_options(sigma: float, threshold: float, normalize: str) -> None:
    if not float(sigma) >= 0:
        raise ValueError(f"sigma must be >= 0 px, got {sigma!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; choose from {NORMALIZATIONS}")
    if not 0 < float(threshold) <= 1:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}")


def mask_from_responses(intact: float, perturbed, centers, *, shape: tuple[int, int],
                        diameter: int | None = None, sigma: float | None = None,
                        threshold: float = 0.5, normalize: str = "max",
                        warn_empty: bool = True) -> LocalizationResult:
    """The localization mask from responses to the intact and the perturbed images.

    1. ``change_i = (intact - perturbed_i) / |intact|`` (:func:`normalized_response_change`).
    2. Weighted average of the disk masks: at each pixel, the mean change of the disks covering
       it (``sum_i change_i disk_i / sum_i disk_i``; 0 where no disk falls), so its unit stays
       "normalised response change".
    3. Gaussian smoothing with ``sigma`` px (scipy ``gaussian_filter``, reflecting edges).
    4. ``normalize="max"`` (default): divide by the map's maximum and clip below at 0, so
       ``threshold=0.5`` keeps the full width at half maximum (Fig. 21's mask);
       ``normalize="none"``: clip to [0, 1] and threshold the change itself (A.1's "change of
       0.5 or greater"). If no disk lowered the response (the smoothed map's maximum is at most
       1e-6, i.e. float rounding) the map and mask are empty and a ``UserWarning`` says so.

    Parameters
    ----------
    intact : response to the intact image; finite and non-zero.
    perturbed : ``(n,)`` responses to the perturbed images, in the order of ``centers``.
    centers : ``(n, 2)`` disk centres (row, col) from :func:`perturbation_stimuli`.
    shape : ``(H, W)`` of the image.
    diameter, sigma, threshold, normalize : as above; ``threshold`` in (0, 1]. ``diameter`` and
        ``sigma`` default to :func:`paper_geometry` of ``shape``.
    warn_empty : warn when the mask is empty (callers that check ``mask.any()`` pass False).
    """
    h, w = (int(s) for s in shape)
    diameter, sigma = resolve_geometry(h, w, diameter, sigma)
    _check_options(sigma, threshold, normalize)
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    check_geometry(h, w, len(centers), int(diameter))
    changes = normalized_response_change(intact, perturbed)
    if changes.shape != (len(centers),):
        raise ValueError(f"{changes.size} perturbed responses for {len(centers)} disks")
    half = (diameter - 1) / 2.0
    if np.any(centers - half < -1e-9) or np.any(centers + half > np.array([h, w]) - 1 + 1e-9):
        raise ValueError(f"every {diameter}-px disk must lie fully inside the {h}x{w} image")
    change_map = _change_map((h, w), centers, changes, diameter, float(sigma))
    norm = _normalized_map(change_map, normalize, warn_empty)
    return LocalizationResult(
        map=norm, mask=norm >= threshold, change_map=change_map, centers=centers,
        changes=changes, perturbed=np.asarray(perturbed, dtype=np.float64).reshape(-1),
        intact=float(intact), diameter=int(diameter), sigma=float(sigma),
        threshold=float(threshold), normalize=normalize,
    )


def _change_map(shape: tuple[int, int], centers: np.ndarray, changes: np.ndarray,
                diameter: int, sigma: float) -> np.ndarray:
    """Mean change of the disks covering each pixel (0 where none does), then smoothed by a
    Gaussian of ``sigma`` px with reflecting edges (none for ``sigma = 0``): ``(H, W)``."""
    total, cover = np.zeros(shape), np.zeros(shape)
    for center, change in zip(centers, changes):
        d = disk_mask(*shape, center, diameter=diameter)
        total += change * d
        cover += d
    raw = np.divide(total, cover, out=np.zeros_like(total), where=cover > 0)
    return gaussian_filter(raw, sigma=sigma, mode="reflect") if sigma > 0 else raw


def _normalized_map(change_map: np.ndarray, normalize: str, warn_empty: bool) -> np.ndarray:
    """``change_map`` in [0, 1]: divided by its peak (``"max"``) or clipped (``"none"``); all
    zero, with an optional warning, when no disk lowered the response."""
    peak = float(change_map.max())
    if peak <= _NO_CHANGE:
        if warn_empty:
            warnings.warn("no perturbation lowered the response; the localization mask is empty",
                          UserWarning, stacklevel=3)
        return np.zeros_like(change_map)
    if normalize == "max":
        return np.clip(change_map / peak, 0.0, 1.0)
    return np.clip(change_map, 0.0, 1.0)


def perturbation_mask(score_fn: ScoreFn, image, *, n_disks: int = 30,
                      diameter: int | None = None, sigma: float | None = None,
                      threshold: float = 0.5, normalize: str = "max", seed: int = 0,
                      batch_size: int = 16, warn_empty: bool = True) -> LocalizationResult:
    """Localize the image region that drives ``score_fn`` by shuffling disks (A.1, Fig. 21).

    Parameters
    ----------
    score_fn : callable on images ``(N, 3, H, W)`` in [0, 1] returning responses ``(N,)``
        (Tensor or array), e.g. ``lambda x: model(x)[:, unit]``. Called under ``no_grad``.
    image : Tensor or array ``(3, H, W)`` in [0, 1] (the paper: 256 x 256); not modified.
        Perturbed images are built on its device.
    n_disks, diameter, seed : see :func:`perturbation_stimuli` (paper: 30 disks of 50 px).
    sigma, threshold, normalize, warn_empty : see :func:`mask_from_responses` (paper: σ = 30
        px, 0.5); ``diameter`` and ``sigma`` default to :func:`paper_geometry` of the image.
    batch_size : perturbed images per ``score_fn`` call, >= 1; the result does not depend on it.

    Returns a :class:`LocalizationResult`. Raises ``ValueError`` on a bad image or option, a
    disk larger than the image, an intact response that is zero or NaN (the normalised change
    is undefined), or NaN perturbed responses.
    """
    image = check_image(image)
    h, w = image.shape[1:]
    diameter, sigma = resolve_geometry(h, w, diameter, sigma)
    check_geometry(h, w, n_disks, diameter)
    _check_options(sigma, threshold, normalize)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    tops, perms, dy, dx, centers = disk_plan(h, w, int(n_disks), int(diameter), seed)
    intact = _scores(score_fn, image.unsqueeze(0), "intact image")[0]
    normalized_response_change(intact, [])  # fail before scoring the perturbations
    perturbed = np.concatenate([
        _scores(score_fn, perturbed_copies(image, tops[i:i + batch_size],
                                           perms[i:i + batch_size], dy, dx), "perturbed images")
        for i in range(0, int(n_disks), int(batch_size))
    ])
    return mask_from_responses(intact, perturbed, centers, shape=(h, w), diameter=int(diameter),
                               sigma=sigma, threshold=threshold, normalize=normalize,
                               warn_empty=warn_empty)


# -- background clearing (Fig. 24) ----------------------------------------------------------------
def _fill_value(fill) -> tuple[float, float, float]:
    if isinstance(fill, str):
        if fill not in FILLS:
            raise ValueError(f"unknown fill {fill!r}; choose from {list(FILLS)} or a number "
                             "in [0, 1]")
        return (FILLS[fill],) * 3
    vals = np.broadcast_to(np.asarray(fill, dtype=np.float64), (3,)) if np.ndim(fill) <= 1 else None
    if vals is None or not np.all((vals >= 0) & (vals <= 1)):
        raise ValueError(f"fill must be {list(FILLS)}, a number or an RGB triple in [0, 1]; "
                         f"got {fill!r}")
    return tuple(float(v) for v in vals)


def clear_background(image, mask, *, fill="gray"):
    """Keep the pixels inside ``mask`` and paint the rest one uniform colour.

    Parameters
    ----------
    image : Tensor or array ``(3, H, W)`` in [0, 1]; not modified. The result has its type,
        device and dtype.
    mask : boolean (or 0/1) ``(H, W)`` array/tensor, or a :class:`LocalizationResult`.
    fill : ``"gray"`` (0.5), ``"white"``, ``"black"``, a number or an RGB triple in [0, 1].
    """
    was_numpy = isinstance(image, np.ndarray)
    img = check_image(image)
    keep = torch.as_tensor(np.array(_as_bool_mask(mask, tuple(img.shape[1:])), copy=True),
                           device=img.device)  # a copy: masks may be read-only arrays
    colour = torch.tensor(_fill_value(fill), dtype=img.dtype, device=img.device).view(3, 1, 1)
    out = torch.where(keep, img, colour)
    return out.cpu().numpy() if was_numpy else out


@dataclass(frozen=True)
class BackgroundClearing:
    """Responses to an image and its cleared version; ``relative_change > 0``: clearing raised
    the response (the paper's prediction for reduced inhibitory drive, Fig. 24)."""

    intact: float
    cleared: float
    relative_change: float  # (cleared - intact) / |intact|
    fill: tuple[float, float, float]
    cleared_image: Tensor  # (3, H, W) in [0, 1]


def background_clearing_effect(score_fn: ScoreFn, image, mask, *,
                               fill="gray") -> BackgroundClearing:
    """Score ``image`` and :func:`clear_background` of it with one ``score_fn`` call of 2 images."""
    img = check_image(image)
    cleared = clear_background(img, mask, fill=fill)
    intact, after = _scores(score_fn, torch.stack([img, cleared]), "intact and cleared images")
    if not np.isfinite(intact) or intact == 0.0:
        raise ValueError(f"the intact response is {intact!r}; the relative change needs a finite, "
                         "non-zero intact response")
    if not np.isfinite(after):
        raise ValueError(f"the response to the cleared image is {after!r}")
    return BackgroundClearing(float(intact), float(after), float((after - intact) / abs(intact)),
                              _fill_value(fill), cleared)


# -- display --------------------------------------------------------------------------------------
def _to_uint8_hwc(image) -> np.ndarray:
    a = _as_numpy(image)
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3:
        return a.copy()
    a = _as_numpy(check_image(image))
    return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0).copy()


def mask_overlay(image, mask_or_map, *, style: str = "outline", color=None, alpha: float = 0.6,
                 threshold: float = 0.5, width: int = 2) -> np.ndarray:
    """A uint8 ``(H, W, 3)`` RGB picture of a mask on its image (for :func:`export.image_png`).

    Parameters
    ----------
    image : ``(3, H, W)`` float in [0, 1] (Tensor or array) or uint8 ``(H, W, 3)``.
    mask_or_map : boolean ``(H, W)`` mask, float ``(H, W)`` map in [0, 1] (masked at
        ``threshold``), or a :class:`LocalizationResult` (its map and mask).
    style : ``"outline"`` paints the mask's inner border ``width`` px wide in ``color`` (default
        red); ``"tint"`` blends the outside toward ``color`` (default mid-gray) with weight
        ``alpha * (1 - map)`` (a boolean mask counts as a 0/1 map; a result gives its
        ``mask`` to outline and its ``map`` to tint).
    """
    if style not in OVERLAY_STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {OVERLAY_STYLES}")
    if not 0 <= float(alpha) <= 1 or int(width) < 1:
        raise ValueError(f"alpha must lie in [0, 1] and width >= 1; got {alpha!r}, {width!r}")
    rgb = _to_uint8_hwc(image)
    shape = rgb.shape[:2]
    if isinstance(mask_or_map, LocalizationResult):
        mask_or_map = mask_or_map.map if style == "tint" else mask_or_map.mask
    m = _as_numpy(mask_or_map)
    if m.shape != shape:
        raise ValueError(f"mask has shape {m.shape} but the image is {shape} (H, W)")
    if m.dtype == bool:
        weight, mask = m.astype(np.float64), m
    else:
        weight = m.astype(np.float64)
        if not np.all((weight >= 0) & (weight <= 1)):
            raise ValueError("a continuous map must lie in [0, 1]")
        mask = weight >= threshold
    out = rgb.astype(np.float64)
    if style == "outline":
        edge = mask & ~binary_erosion(mask, iterations=int(width), border_value=1)
        out[edge] = color if color is not None else (255, 0, 0)
    else:
        a = float(alpha) * (1.0 - weight)[..., None]
        out = (1 - a) * out + a * np.asarray(color if color is not None else (128, 128, 128))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
