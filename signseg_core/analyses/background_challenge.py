"""ImageNet-9 and the backgrounds challenge under whole-readout ablation (paper Fig 17; Xiao et al.).

For each condition of the grid, per variant of ImageNet-9 (:mod:`signseg_core.datasets.backgrounds`)

    accuracy  = #(images whose top-1 ImageNet class maps to their ImageNet-9 class) / #(images)
    BG-gap    = accuracy(mixed_same) - accuracy(mixed_rand)
    challenge = #(foregrounds classified correctly on every only_bg_t background) / #(foregrounds)

with chance at 1/9 (:data:`~signseg_core.datasets.backgrounds.CHANCE`). The challenge pastes each
foreground on the backgrounds a batch at a time and stops a foreground early once every condition
has been fooled (the repository stops at the first fooling background; the answer is the same).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
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
from signseg_core.datasets.backgrounds import (
    VARIANTS,
    Foreground,
    challenge_foregrounds,
    find_backgrounds,
    in9_decisions,
    load_mask,
    variant_images,
)
from signseg_core.datasets.files import DatasetError, load_rgb, load_rgb_uint8
from signseg_core.models.zoo import ZooModel

__all__ = ["TABLE_COLUMNS", "backgrounds", "backgrounds_family", "backgrounds_table"]

TABLE_COLUMNS = ["model", "measure", "sign", "alpha", "control", "n", "correct", "value"]


def _variant_decider(model: ZooModel, batch_size: int):
    def decide(items: Sequence[tuple[Path, int]], stack: Tensor) -> np.ndarray:
        parts = []
        for start in range(0, len(items), batch_size):
            batch = load_rgb([p for p, _ in items[start:start + batch_size]])
            parts.append(in9_decisions(logits_of_images(model, batch, stack)).cpu().numpy())
        return np.concatenate(parts)
    return decide


def _challenge_decider(model: ZooModel, backgrounds: Sequence[Path], batch_size: int):
    """``decide(foregrounds, stack)``: 1 where a condition classified the foreground correctly
    on every background, else 0, ``(n, C)``. The backgrounds are read once, kept as uint8."""
    cache: dict[str, Tensor] = {}

    def bgs() -> Tensor:
        if "bg" not in cache:
            arrays = [load_rgb_uint8(p) for p in backgrounds]
            shapes = {a.shape for a in arrays}
            if len(shapes) != 1:
                odd = next(p for p, a in zip(backgrounds, arrays) if a.shape != arrays[0].shape)
                raise DatasetError(f"the background {odd} is not {arrays[0].shape[0]}x"
                                   f"{arrays[0].shape[1]} like the others")
            cache["bg"] = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(model.device)
        return cache["bg"]

    def decide(foregrounds: Sequence[Foreground], stack: Tensor) -> np.ndarray:
        bg = bgs()
        out = np.zeros((len(foregrounds), stack.shape[0]), dtype=np.int16)
        for i, fg in enumerate(foregrounds):
            image = load_rgb_uint8(fg.image)
            if image.shape[:2] != tuple(bg.shape[2:]):
                raise DatasetError(f"the foreground image {fg.image} is {image.shape[0]}x"
                                   f"{image.shape[1]}, the backgrounds {bg.shape[2]}x{bg.shape[3]}")
            mask = torch.from_numpy(load_mask(fg.mask, image.shape[:2])).to(model.device)
            fore = torch.from_numpy(image).permute(2, 0, 1).to(model.device).float() / 255
            alive = torch.ones(stack.shape[0], dtype=torch.bool, device=model.device)
            for start in range(0, bg.shape[0], batch_size):
                back = bg[start:start + batch_size].float() / 255
                composite = torch.where(mask, fore, back)  # bg * (1 - m) + m * fg, m in {0, 1}
                decided = in9_decisions(logits_of_images(model, composite, stack))
                alive &= (decided == fg.label).all(dim=0)
                if not bool(alive.any()):
                    break  # every condition fooled: no background can undo it
            out[i] = alive.cpu().numpy()
        return out
    return decide


def backgrounds_table(model_name: str, per_variant: dict[str, tuple[np.ndarray, np.ndarray]],
                      challenge: np.ndarray | None, grid: AblationGrid) -> pd.DataFrame:
    """Rows of :data:`TABLE_COLUMNS`: per variant ``(decisions (N, C), labels (N,))`` its
    accuracy; ``bg_gap`` when both mixed_same and mixed_rand are there; ``challenge`` from the
    per-foreground survivals ``(F, C)`` when given. One row per curve point and measure."""
    rows = []
    for sign, alpha, control in condition_columns(grid):
        c = condition_index(grid, sign, alpha, control)
        base = {"model": model_name, "sign": sign, "alpha": alpha, "control": control}
        acc = {}
        for variant, (decisions, labels) in per_variant.items():
            correct = int((decisions[:, c] == labels).sum())
            acc[variant] = correct / len(labels)
            rows.append({**base, "measure": variant, "n": len(labels), "correct": correct,
                         "value": acc[variant]})
        if "mixed_same" in acc and "mixed_rand" in acc:
            rows.append({**base, "measure": "bg_gap", "n": np.nan, "correct": np.nan,
                         "value": acc["mixed_same"] - acc["mixed_rand"]})
        if challenge is not None:
            correct = int(challenge[:, c].sum())
            rows.append({**base, "measure": "challenge", "n": len(challenge), "correct": correct,
                         "value": correct / len(challenge)})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _needed(variants: Sequence[str], challenge: bool) -> tuple[str, ...]:
    """The folders an evaluation reads, after checking the variant names."""
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown ImageNet-9 variant {v!r}; choose from {list(VARIANTS)}")
    if not variants and not challenge:
        raise ValueError("name at least one ImageNet-9 variant, or ask for the challenge")
    extra = ("fg_mask", "original", "only_bg_t") if challenge else ()
    return tuple(dict.fromkeys((*variants, *extra)))


def backgrounds(model: ZooModel, folder: str | Path, *, variants: Sequence[str] = VARIANTS,
                challenge: bool = False, grid: AblationGrid = AblationGrid(), store=None,
                batch_size: int = 32, chunk_size: int = 256, challenge_chunk: int = 8,
                progress: Callable[..., None] | None = None,
                should_stop: Callable[[], bool] | None = None, quiet: bool = True
                ) -> pd.DataFrame:
    """ImageNet-9 accuracy per variant, the BG-gap and (``challenge=True``) the challenge
    accuracy of ``model`` for every condition of ``grid``; see :func:`backgrounds_table`.

    ``folder`` holds the variant folders (or ``bg_challenge/``); every variant asked, and for the
    challenge ``fg_mask``, ``original`` and ``only_bg_t``, is checked before anything runs.
    ``chunk_size`` images (``challenge_chunk`` foregrounds) make one stored chunk.
    """
    batch_size = check_int("batch_size", batch_size, low=1)
    root = find_backgrounds(folder, _needed(variants, challenge))
    listed = {v: variant_images(root, v) for v in variants}
    if challenge:
        fgs, fg_fp = challenge_foregrounds(root)
        bg_items, bg_fp = variant_images(root, "only_bg_t") if "only_bg_t" not in listed \
            else listed["only_bg_t"]
    common = dict(grid=grid, store=store, progress=progress, should_stop=should_stop, quiet=quiet)
    per_variant = {}
    for variant, (items, fingerprint) in listed.items():
        decisions = evaluate_in_chunks(
            model, items, _variant_decider(model, batch_size), benchmark=f"in9/{variant}",
            dataset_fingerprint=fingerprint, chunk_size=chunk_size, **common)
        per_variant[variant] = (decisions, np.array([label for _, label in items]))
    survived = None
    if challenge:
        fingerprint = hashlib.sha256(f"{fg_fp}|{bg_fp}".encode()).hexdigest()
        survived = evaluate_in_chunks(
            model, fgs, _challenge_decider(model, [p for p, _ in bg_items], batch_size),
            benchmark="bg-challenge", dataset_fingerprint=fingerprint,
            chunk_size=challenge_chunk, **common)
    return backgrounds_table(model.name, per_variant, survived, grid)


def backgrounds_family(names: Sequence[str], folder: str | Path, *, device: str = "cpu",
                       weights: str | None = None, variants: Sequence[str] = VARIANTS,
                       challenge: bool = False, **options
                       ) -> tuple[pd.DataFrame, list[ModelSkipped]]:
    """:func:`backgrounds` for each model of ``names`` that loads here; the others are
    :class:`ModelSkipped` with their sentence. The folders are checked before any model loads."""
    root = find_backgrounds(folder, _needed(variants, challenge))
    for v in variants:
        variant_images(root, v)
    if challenge:
        challenge_foregrounds(root)
    tables, skipped = [], []
    for model in models_or_reasons(names, device=device, weights=weights):
        if isinstance(model, ModelSkipped):
            skipped.append(model)
            continue
        tables.append(backgrounds(model, folder, variants=variants, challenge=challenge,
                                  **options))
    table = pd.concat(tables, ignore_index=True) if tables else \
        pd.DataFrame(columns=TABLE_COLUMNS)
    return table, skipped
