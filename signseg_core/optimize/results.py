"""One condition's preferred images and scores, and how they go into and out of the store.

Images are kept as PNGs (:mod:`signseg_core.figures.png`), the arrays as they are; an entry that
does not decode is deleted and reported missing, so the caller recomputes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from signseg_core.conditions import Condition
from signseg_core.figures.png import png_bytes, png_decode
from signseg_core.optimize.settings import ConditionKey
from signseg_core.store import ResultStore


@dataclass
class ConditionResult:
    """All restarts of one condition.

    images : uint8 (R, H, W, 3); best_scores, intact_scores : (R,) float64 (the ablated objective
    and the intact unit's logit on the same image); max_per_gen, mean_per_gen : (G, R);
    best_codes, final_means : (R, d) float32.
    """

    key: ConditionKey
    images: np.ndarray
    best_scores: np.ndarray
    intact_scores: np.ndarray
    max_per_gen: np.ndarray
    mean_per_gen: np.ndarray
    best_codes: np.ndarray
    final_means: np.ndarray
    cancelled: bool = False
    from_store: bool = field(default=False, compare=False)

    @property
    def condition(self) -> Condition:
        sign = "positive" if self.key.sign == "control" else self.key.sign
        return Condition(self.key.unit, sign, self.key.alpha)

    @property
    def best_index(self) -> int:
        return int(np.nanargmax(self.best_scores)) if np.isfinite(self.best_scores).any() else 0

    @property
    def best_image(self) -> np.ndarray:
        return self.images[self.best_index]

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in
                ("best_scores", "intact_scores", "max_per_gen", "mean_per_gen",
                 "best_codes", "final_means")}


def to_uint8(images: Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] → uint8 (N, H, W, 3)."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8) \
        .permute(0, 2, 3, 1).cpu().numpy()


def save_condition(store: ResultStore, result: ConditionResult) -> None:
    """Put ``result`` in ``store`` under its key: the arrays as they are, the images as PNGs."""
    store.put(result.key, result.arrays(), blobs={"png": [png_bytes(im) for im in result.images]})


def load_condition(store: ResultStore, key: ConditionKey) -> ConditionResult | None:
    """One stored condition, or None when absent or unreadable (an unreadable one is deleted)."""
    got = store.get(key)
    if got is None:
        return None
    arrays, _, blobs = got
    try:
        images = np.stack([png_decode(b) for b in blobs["png"]])
        return ConditionResult(key, images, **{k: arrays[k] for k in (
            "best_scores", "intact_scores", "max_per_gen", "mean_per_gen", "best_codes",
            "final_means")}, from_store=True)
    except Exception:  # a field missing or an image that will not decode: recompute
        store.delete(key)
        return None


def summary_table(results: Sequence[ConditionResult], class_names=None):
    """One row per condition: unit, sign, alpha, best/mean score over restarts, intact score."""

    rows = []
    for r in results:
        k = r.key
        rows.append({
            "unit": k.unit,
            "class": class_names[k.unit] if class_names is not None else "",
            "sign": k.sign,
            "alpha": k.alpha,
            "best_score": float(np.nanmax(r.best_scores)),
            "mean_score": float(np.nanmean(r.best_scores)),
            "intact_score": float(np.nanmean(r.intact_scores)),
            "restarts": len(r.best_scores),
            "from_store": r.from_store,
        })
    return pd.DataFrame(rows)
