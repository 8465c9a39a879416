"""The stimuli of perturbation localization (appendix A.1): disks whose pixels are shuffled.

Each perturbed image is a copy of the image with the pixels inside one disk permuted (all
channels together). Disks are placed uniformly over the positions fully inside the image, and
their positions and permutations are drawn from one seeded generator, so the same seed gives the
same stimuli whether they are scored here (:func:`~signseg_core.neurons.localize.perturbation_mask`)
or shown to a monkey (:func:`perturbation_stimuli`). The disk size defaults to the paper's
geometry scaled to the image (:func:`paper_geometry`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from signseg_core.models.zoo import check_images

__all__ = ["PAPER_DIAMETER", "PAPER_SIDE", "PAPER_SIGMA", "PerturbationStimuli", "check_geometry",
           "check_image", "disk_mask", "disk_plan", "paper_geometry", "perturbation_stimuli",
           "perturbed_copies", "resolve_geometry"]


def check_image(image) -> Tensor:
    """``(3, H, W)`` float in [0, 1] as a tensor (numpy arrays are converted, never modified)."""
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.array(image))  # a copy, dtype kept
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a torch.Tensor or numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 2:
        raise ValueError(f"image must have shape (3, H, W) with H, W >= 2, "
                         f"got {tuple(image.shape)}")
    return check_images(image.unsqueeze(0))[0]  # dtype, NaN and range as for models


def check_geometry(height: int, width: int, n_disks: int, diameter: int) -> None:
    """ValueError unless ``n_disks >= 1`` disks of ``diameter >= 2`` px fit a ``height`` x
    ``width`` image."""
    if int(n_disks) < 1:
        raise ValueError(f"n_disks must be >= 1, got {n_disks!r}")
    if int(diameter) < 2:
        raise ValueError(f"diameter must be >= 2 px, got {diameter!r}")
    if diameter > min(height, width):
        raise ValueError(f"a {diameter}-px disk cannot lie fully inside a {height}x{width} image; "
                         f"choose diameter <= {min(height, width)}")


#: The paper's localization geometry: 50-px disks and σ = 30 px on 256-px images (A.1).
PAPER_SIDE, PAPER_DIAMETER, PAPER_SIGMA = 256, 50, 30.0


def paper_geometry(height: int, width: int) -> tuple[int, float]:
    """``(disk diameter px, sigma px)``: the paper's 50 px and 30 px scaled from 256 px to the
    image's short side (a 128-px image: 25 and 15)."""
    side = min(int(height), int(width))
    return max(2, round(side * PAPER_DIAMETER / PAPER_SIDE)), side * PAPER_SIGMA / PAPER_SIDE


def resolve_geometry(h: int, w: int, diameter, sigma) -> tuple[int, float]:
    """``diameter`` and ``sigma``, each :func:`paper_geometry`'s for an ``h`` x ``w`` image
    when None."""
    paper_d, paper_s = paper_geometry(h, w)
    return (paper_d if diameter is None else int(diameter),
            paper_s if sigma is None else float(sigma))


def disk_mask(height: int, width: int, center, *, diameter: int) -> np.ndarray:
    """Boolean ``(height, width)`` disk: the pixels within ``diameter / 2`` of ``center``.

    ``center`` is ``(row, col)`` in pixel units; a disk whose bounding box starts at ``(t, l)``
    has centre ``(t + (D - 1) / 2, l + (D - 1) / 2)`` and spans exactly ``D`` rows and columns.
    """
    cy, cx = (float(c) for c in center)
    yy, xx = np.ogrid[:height, :width]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= (diameter / 2.0) ** 2


def disk_plan(height: int, width: int, n_disks: int, diameter: int, seed: int):
    """Where the disks go and how their pixels move, drawn from ``default_rng(seed)``.

    Returns ``(tops, perms, dy, dx, centers)``: top-left corners ``(n, 2)`` of disks fully
    inside, a permutation ``(n, P)`` of each disk's ``P`` pixels, those pixels' offsets ``(P,)``
    from the corner (rows, columns), and the disks' centres ``(n, 2)`` as (row, col).
    """
    rng = np.random.default_rng(seed)
    tops = np.stack([rng.integers(0, height - diameter + 1, size=n_disks),
                     rng.integers(0, width - diameter + 1, size=n_disks)], axis=1)
    c = (diameter - 1) / 2.0
    dy, dx = np.nonzero(disk_mask(diameter, diameter, (c, c), diameter=diameter))
    perms = np.stack([rng.permutation(dy.size) for _ in range(n_disks)])
    return tops, perms, dy, dx, tops + c


def perturbed_copies(image: Tensor, tops, perms, dy, dx) -> Tensor:
    """One copy of ``image`` per disk with that disk's pixels permuted (all channels together)."""
    out = image.unsqueeze(0).repeat(len(tops), 1, 1, 1)
    for k, ((top, left), perm) in enumerate(zip(tops, perms)):
        ys = torch.as_tensor(top + dy, device=image.device)
        xs = torch.as_tensor(left + dx, device=image.device)
        p = torch.as_tensor(perm, device=image.device)
        out[k][:, ys, xs] = image[:, ys[p], xs[p]]
    return out


@dataclass(frozen=True)
class PerturbationStimuli:
    """Perturbed images ``(n, 3, H, W)`` and their disks' centres ``(n, 2)`` as (row, col)."""

    images: Tensor
    centers: np.ndarray
    diameter: int

    def __post_init__(self):
        if self.images.ndim != 4 or len(self.images) != len(self.centers):
            raise ValueError(f"{len(self.centers)} centres for images {tuple(self.images.shape)}")


def perturbation_stimuli(image, *, n_disks: int = 30, diameter: int | None = None,
                         seed: int = 0) -> PerturbationStimuli:
    """The perturbed images to present (e.g. to a monkey) for
    :func:`~signseg_core.neurons.localize.mask_from_responses`.

    Parameters
    ----------
    image : Tensor or array ``(3, H, W)`` in [0, 1] (the paper: 256 x 256); not modified.
    n_disks : number of disks, one perturbed image each (the paper: 30).
    diameter : disk diameter in pixels, ``2 <= diameter <= min(H, W)``; default
        :func:`paper_geometry`'s (the paper's 50 px on 256-px images, scaled to this image).
    seed : seeds disk positions (uniform over positions fully inside) and pixel permutations.
    """
    image = check_image(image)
    h, w = image.shape[1:]
    diameter, _ = resolve_geometry(h, w, diameter, None)
    check_geometry(h, w, n_disks, diameter)
    tops, perms, dy, dx, centers = disk_plan(h, w, int(n_disks), int(diameter), seed)
    images = perturbed_copies(image, tops, perms, dy, dx)
    return PerturbationStimuli(images, centers, int(diameter))
