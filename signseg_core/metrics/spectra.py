"""Radial power spectra of preferred images (paper Figs 14-15).

Each image is reduced to one channel (the mean of R, G, B by default, or Rec. 601 luma), its mean
is removed, and the 2-D FFT power ``|F(u, v)|^2 / (H W)`` is averaged over annuli of integer
radius ``k`` in cycles per image (``round(sqrt(u^2 + v^2)) == k``, with ``u`` in cycles per image
width and ``v`` in cycles per image height), for ``k = 1 .. min(H, W) // 2`` (Nyquist). With this
normalisation, white noise of variance ``s^2`` has power ``s^2`` at every frequency (Parseval),
and a grating of ``k`` cycles per image puts all its power in bin ``k``. The DC bin is left out:
after mean removal it is zero, and it has no place on a log-log plot.

Fig 14 plots per-class mean spectra (:func:`mean_spectrum`), Fig 15 the ratio of control to
ablated spectra (:func:`spectrum_ratio`); :func:`spectral_slope` summarises a spectrum by its
log-log slope (natural images: about -2).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from signseg_core.metrics.similarity import as_float_images

COLORS = ("mean", "luma")
_LUMA = (0.299, 0.587, 0.114)


def radial_power_spectrum(
    images: np.ndarray | Tensor, *, color: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of each image.

    Parameters
    ----------
    images : (N, ...) images (see :func:`signseg_core.metrics.similarity.as_float_images`), at least
    4 x 4.
    color : ``"mean"`` (equal weights of R, G, B) or ``"luma"`` (0.299 R + 0.587 G + 0.114 B).

    Returns
    -------
    freqs : float64 (K,), ``1 .. K`` cycles per image, ``K = min(H, W) // 2``.
    power : float64 (N, K), mean power over the annulus of each frequency (>= 0).
    """
    if color not in COLORS:
        raise ValueError(f"unknown color {color!r}; choose from {list(COLORS)}")
    x = as_float_images(images).double()
    h, w = x.shape[-2:]
    if min(h, w) < 4:
        raise ValueError(f"images must be at least 4 x 4 px for a spectrum, got {h} x {w}")
    weights = (1 / 3,) * 3 if color == "mean" else _LUMA
    gray = torch.einsum("nchw,c->nhw", x, torch.tensor(weights, dtype=x.dtype, device=x.device))
    gray = gray - gray.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(gray).abs().square() / (h * w)
    bins, n_bins = _radial_bins(h, w, x.device)
    keep = (bins >= 1) & (bins <= n_bins)
    flat = power.reshape(len(x), -1)[:, keep]
    index = bins[keep] - 1
    sums = torch.zeros(len(x), n_bins, dtype=x.dtype, device=x.device).index_add_(1, index, flat)
    counts = torch.bincount(index, minlength=n_bins).to(x.dtype)
    freqs = np.arange(1, n_bins + 1, dtype=np.float64)
    return freqs, (sums / counts).cpu().numpy()


def _radial_bins(h: int, w: int, device: torch.device) -> tuple[Tensor, int]:
    """Each FFT coefficient's integer radius in cycles per image, flattened; and Nyquist."""
    v = torch.fft.fftfreq(h, d=1.0 / h, dtype=torch.float64, device=device)
    u = torch.fft.fftfreq(w, d=1.0 / w, dtype=torch.float64, device=device)
    radius = torch.sqrt(v[:, None] ** 2 + u[None, :] ** 2)
    return torch.floor(radius + 0.5).long().reshape(-1), min(h, w) // 2


def mean_spectrum(
    images: np.ndarray | Tensor, *, color: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """The radial power spectrum averaged over a set of images (one class or condition).

    Returns
    -------
    freqs : float64 (K,) cycles per image; power : float64 (K,), the mean of each image's power.
    """
    freqs, power = radial_power_spectrum(images, color=color)
    return freqs, power.mean(axis=0)


def spectrum_ratio(control: np.ndarray, ablated: np.ndarray) -> np.ndarray:
    """Control over ablated power per frequency (paper Fig 15: "ratio of control to ablated").

    Parameters
    ----------
    control, ablated : power spectra (K,), or (N, K) per image (averaged over rows first), on
        the same frequencies (images of the same size).

    Returns
    -------
    float64 (K,): above 1 where ablation removed power, below 1 where it added some; NaN where
    the ablated power is zero.
    """
    c, a = _mean_power(control, "control"), _mean_power(ablated, "ablated")
    if c.shape != a.shape:
        raise ValueError(f"control and ablated spectra differ in length: {c.shape} vs {a.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, c / np.where(a > 0, a, 1.0), np.nan)


def _mean_power(power: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(power, dtype=np.float64)
    if p.ndim == 2:
        p = p.mean(axis=0)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"{name} must be a spectrum (K,) or (N, K), got shape {np.shape(power)}")
    return p


def spectral_slope(
    freqs: np.ndarray, power: np.ndarray, *, fmin: float, fmax: float
) -> float | np.ndarray:
    """Least-squares slope of ``log10 power`` against ``log10 freqs`` on ``fmin <= f <= fmax``.

    Parameters
    ----------
    freqs : (K,) cycles per image (positive).
    power : (K,) or (N, K) power spectra (positive on the fitted range).
    fmin, fmax : the fitted range, inclusive; it must hold at least 2 frequencies.

    Returns
    -------
    float for one spectrum, float64 (N,) for several. White noise: 0; amplitude ~ 1/f: -2.
    """
    f = np.asarray(freqs, dtype=np.float64)
    p = np.asarray(power, dtype=np.float64)
    if f.ndim != 1 or p.shape[-1] != f.size or p.ndim not in (1, 2):
        raise ValueError(f"freqs must be (K,) and power (K,) or (N, K); got {f.shape}, {p.shape}")
    if not 0 < fmin < fmax:
        raise ValueError(f"need 0 < fmin < fmax, got fmin={fmin!r}, fmax={fmax!r}")
    sel = (f >= fmin) & (f <= fmax)
    if sel.sum() < 2:
        raise ValueError(f"[{fmin}, {fmax}] holds {int(sel.sum())} of the frequencies "
                         f"{f.min():g}..{f.max():g}; need at least 2")
    rows = np.atleast_2d(p)[:, sel]
    if not (np.isfinite(rows) & (rows > 0)).all():
        raise ValueError("power must be finite and positive on the fitted range")
    x = np.log10(f[sel])
    y = np.log10(rows)
    xc = x - x.mean()
    slopes = (y - y.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
    return float(slopes[0]) if p.ndim == 1 else slopes
