"""Shape vs texture under whole-readout ablation (paper Fig 16; Geirhos et al. 2019, 2022).

For each condition of the grid (every unit's positive, or negative, weights removed at alpha by the
cumulative rule), the cue-conflict images are decided as one of 16 categories the benchmark's way
(:mod:`signseg_core.datasets.cue_conflict`), and

    shape accuracy   = #(conflict images decided as their shape)   / #(all images)
    texture accuracy = #(conflict images decided as their texture) / #(all images)
    shape bias       = shape hits / (shape hits + texture hits)        (NaN when both are 0)

as model-vs-human's ``ShapeBias`` computes them (non-conflict images only in the denominator).
The paper's Fig 16 plots the three against alpha per sign, across the robust ResNet50 ε series.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from torch import Tensor

from signseg_core.analyses.ablation_benchmarks import (
    AblationGrid,
    ModelSkipped,
    condition_columns,
    condition_index,
    evaluate_in_chunks,
    logits_of_images,
    models_or_reasons,
)
from signseg_core.checks import check_int
from signseg_core.datasets.cue_conflict import (
    CueConflictImage,
    category_decisions,
    cue_conflict_images,
    shape_texture_counts,
)
from signseg_core.datasets.files import load_rgb
from signseg_core.models.zoo import ZooModel
from signseg_core.store import ResultStore

__all__ = ["TABLE_COLUMNS", "shape_texture", "shape_texture_family", "shape_texture_table"]

TABLE_COLUMNS = ["model", "sign", "alpha", "control", "n_images", "n_conflict", "shape_hits",
                 "texture_hits", "shape_accuracy", "texture_accuracy", "shape_bias"]


def _decider(model: ZooModel, batch_size: int) -> Callable[[Sequence, Tensor], np.ndarray]:
    """``decide(images, stack)``: category decisions ``(n, C)`` in batches of ``batch_size``."""
    def decide(images: Sequence[CueConflictImage], stack: Tensor) -> np.ndarray:
        parts = []
        for start in range(0, len(images), batch_size):
            batch = load_rgb([im.path for im in images[start:start + batch_size]])
            parts.append(category_decisions(logits_of_images(model, batch, stack)).cpu().numpy())
        return np.concatenate(parts)
    return decide


def shape_texture_table(model_name: str, images: Sequence[CueConflictImage],
                        decisions: np.ndarray, grid: AblationGrid) -> pd.DataFrame:
    """One row per curve point (the control at alpha 0 of each sign) of :data:`TABLE_COLUMNS`,
    from decisions ``(N, conditions)`` of :func:`shape_texture`'s evaluation."""
    counts = shape_texture_counts(decisions, images)
    n = counts["n_images"]
    rows = []
    for sign, alpha, control in condition_columns(grid):
        c = condition_index(grid, sign, alpha, control)
        shape, texture = int(counts["shape_hits"][c]), int(counts["texture_hits"][c])
        rows.append({
            "model": model_name, "sign": sign, "alpha": alpha, "control": control,
            "n_images": n, "n_conflict": counts["n_conflict"], "shape_hits": shape,
            "texture_hits": texture, "shape_accuracy": shape / n, "texture_accuracy": texture / n,
            "shape_bias": shape / (shape + texture) if shape + texture else float("nan"),
        })
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def shape_texture(model: ZooModel, folder: str | Path, *, grid: AblationGrid = AblationGrid(),
                  store: ResultStore | None = None, batch_size: int = 32, chunk_size: int = 256,
                  progress: Callable[..., None] | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  quiet: bool = True) -> pd.DataFrame:
    """Shape accuracy, texture accuracy and shape bias of ``model`` for every condition.

    Parameters
    ----------
    model : ZooModel with a 1000-way ImageNet readout (on the device to run on).
    folder : the cue-conflict folder (or the folder holding ``cue-conflict/``); checked whole
        before anything runs (:func:`~signseg_core.datasets.cue_conflict.cue_conflict_images`).
    grid : alphas and signs of the whole-readout ablation.
    store : chunks of decisions are read from and put in it (resumable); None: not stored.
    batch_size : images per trunk pass; chunk_size : images per stored chunk (part of the key).
    progress, should_stop, quiet : see :func:`~.ablation_benchmarks.evaluate_in_chunks`.

    Returns
    -------
    DataFrame of :data:`TABLE_COLUMNS`, one row per sign and alpha (the control in each sign).
    """
    batch_size = check_int("batch_size", batch_size, low=1)
    images, fingerprint = cue_conflict_images(folder)
    decisions = evaluate_in_chunks(
        model, images, _decider(model, batch_size), benchmark="cue-conflict",
        dataset_fingerprint=fingerprint, grid=grid, store=store, chunk_size=chunk_size,
        progress=progress, should_stop=should_stop, quiet=quiet)
    return shape_texture_table(model.name, images, decisions, grid)


def shape_texture_family(names: Sequence[str], folder: str | Path, *, device: str = "cpu",
                         weights: str | None = None, **options
                         ) -> tuple[pd.DataFrame, list[ModelSkipped]]:
    """:func:`shape_texture` for each model of ``names`` that loads here, in order; the others
    come back as :class:`ModelSkipped` with their sentence. The dataset is checked first, so a bad
    folder fails before any model loads. ``options`` are :func:`shape_texture`'s."""
    cue_conflict_images(folder)
    tables, skipped = [], []
    for model in models_or_reasons(names, device=device, weights=weights):
        if isinstance(model, ModelSkipped):
            skipped.append(model)
            continue
        tables.append(shape_texture(model, folder, **options))
    table = pd.concat(tables, ignore_index=True) if tables else \
        pd.DataFrame(columns=TABLE_COLUMNS)
    return table, skipped
