"""Checks on images before they are shown: is a visualization flat (one grey, no structure)?

A gradient visualization starts from a Fourier image whose pixels vary by under one grey level
(about 0.8/255 at 64-256 px); when the gradient ascent cannot move a channel (a dead channel, a
zero gradient), that is what comes back, and it looks like a flat grey square.
"""

from __future__ import annotations

import numpy as np

#: Pixel standard deviation (images in [0, 1]) below which an image counts as flat: two grey
#: levels of 255, more than the unmoved start (~0.8/255) and far below a visualization that
#: moved (0.1 or more).
FLAT_STD = 2 / 255


def pixel_std(image: np.ndarray) -> float:
    """The spatial standard deviation of ``image``'s pixels in [0, 1] units: per colour channel
    over height and width, the largest of the channels (a flat colour is flat too).

    ``image``: uint8 (H, W, 3) or (H, W) in 0-255, or float in [0, 1].
    """
    values = np.asarray(image)
    if values.ndim not in (2, 3) or values.size == 0:
        raise ValueError(f"expected an (H, W) or (H, W, C) image; got shape {values.shape}")
    scale = 255.0 if values.dtype == np.uint8 else 1.0
    values = values.astype(np.float64) / scale
    if values.ndim == 2:
        values = values[..., None]
    return float(values.reshape(-1, values.shape[-1]).std(axis=0).max())


def is_flat(image: np.ndarray, *, threshold: float = FLAT_STD) -> bool:
    """Whether ``image`` has no visible structure: :func:`pixel_std` below ``threshold``."""
    return pixel_std(image) < threshold


def flat_indices(images, *, threshold: float = FLAT_STD) -> list[int]:
    """Positions of the flat images (:func:`is_flat`) among ``images`` (N, H, W[, C])."""
    return [i for i, image in enumerate(images) if is_flat(image, threshold=threshold)]


def flat_warning(names, *, threshold: float = FLAT_STD) -> str:
    """One line about flat visualizations of ``names`` (e.g. ``["channel 12"]``), or ``""``.

    >>> flat_warning(["channel 12"])  # doctest: +ELLIPSIS
    'Channel 12 came out flat grey (pixel std below 2/255): the gradient ascent did not move it...'
    """
    names = [str(n) for n in names]
    if not names:
        return ""
    which = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    it, these = ("it", "this channel") if len(names) == 1 else ("them", "these channels")
    return (f"{which[0].upper()}{which[1:]} came out flat grey (pixel std below "
            f"{threshold * 255:g}/255): the gradient ascent did not move {it}; {these} may not "
            "respond to any image here (try more steps or another layer).")
