"""Stimulus sets for recording sessions: the paper's *diverseSet* as a workflow (A.1, Fig. 9).

* :func:`diverse_set_from_folder` — a model's outputs for a folder of images
  (:func:`~signseg_core.stimuli.selection.model_outputs_for_folder`), then PCA + k-means and the
  image nearest each center (:func:`~signseg_core.stimuli.selection.diverse_set`); optionally the
  space comes from one folder (ImageNet val) and the images from another (the paper's pooled
  datasets).
* :func:`write_selection` / :func:`read_selection` / :func:`copy_selection` — keep the chosen
  list as a CSV, and gather the files for the stimulus computer.
* :func:`contact_sheet` — a uint8 grid of the chosen images (for :func:`export.image_png`).
"""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from torch import Tensor

from signseg_core.stimuli.selection import diverse_set, kept_components, model_outputs_for_folder

__all__ = [
    "DiverseSetSelection", "contact_sheet", "copy_selection", "diverse_set_from_folder",
    "read_selection", "write_selection",
]

SELECTION_COLUMNS = ("rank", "path")


@dataclass(frozen=True)
class DiverseSetSelection:
    """The images :func:`diverse_set_from_folder` chose, one per k-means center, in center order.

    paths : ``k`` distinct files; indices : their rows in the sorted candidate list;
    explained_variance : summed explained-variance ratio of the kept PCA components, [0, 1];
    n_components : components actually kept (``min(asked, N - 1, D)``); n_candidates : images
    the choice was made from; n_space : images that defined the PCA/k-means space.
    """

    paths: tuple[Path, ...]
    indices: tuple[int, ...]
    explained_variance: float
    n_components: int
    n_candidates: int
    n_space: int
    seed: int

    def __post_init__(self):
        if len(self.paths) != len(self.indices) or not self.paths:
            raise ValueError(f"{len(self.paths)} paths for {len(self.indices)} indices")
        if len(set(self.indices)) != len(self.indices):
            raise ValueError("indices must be distinct")
        if not -1e-9 <= self.explained_variance <= 1 + 1e-9:
            raise ValueError(f"explained_variance must lie in [0, 1], "
                             f"got {self.explained_variance}")

    @property
    def k(self) -> int:
        return len(self.paths)


def diverse_set_from_folder(
    model: Callable,
    folder: str | Path,
    *,
    k: int,
    n_components: int = 300,
    seed: int = 0,
    batch_size: int = 32,
    pool_folder: str | Path | None = None,
    progress: Callable[..., None] | None = None,
) -> DiverseSetSelection:
    """Pick ``k`` images of ``folder`` that span ``model``'s output space (*diverseSet*).

    Parameters
    ----------
    model : callable on ``(n, 3, H, W)`` in [0, 1] returning ``(n, D)`` outputs, e.g.
        ``registry.load_model("alexnet")`` (the paper: AlexNet's 1000 pre-softmax outputs).
    folder : directory of images defining the space (the paper: the 50k ImageNet validation
        images); files directly inside, sorted by name (see ``model_outputs_for_folder``).
    k : number of images, ``1 <= k <=`` the number of candidates (the paper: 160).
    n_components : PCA components at most (the paper: 300); fewer are used when the folder holds
        ``N <= n_components`` images (``min(n_components, N - 1, D)``, at least 1).
    seed : seed of PCA and k-means: the same folder, model and seed give the same choice.
    batch_size : images per forward pass.
    pool_folder : optional directory of candidate images to choose from, projected into the
        space of ``folder``; default: choose from ``folder`` itself.
    progress : optional ``progress(done, total, message)`` called after each stage.

    Returns
    -------
    DiverseSetSelection

    Raises
    ------
    FileNotFoundError / ValueError
        A missing folder, a folder without readable images, or ``k`` above the candidates.
    """
    steps = 3 if pool_folder is not None else 2

    def report(done: int, message: str) -> None:
        if progress is not None:
            progress(done, steps, message)

    k = _check_counts(k, n_components)
    paths, outputs, cand_paths, pool = _space_and_candidates(model, folder, pool_folder,
                                                             batch_size, report)
    _check_enough_images(k, len(paths), len(cand_paths), folder, pool_folder)
    chosen = diverse_set(outputs, k=k, n_components=n_components, seed=seed, pool=pool)
    n_comp = kept_components(n_components, *outputs.shape)
    report(steps, f"chose {k} images ({n_comp} PCA components, "
                  f"{chosen.explained_variance:.0%} of the variance)")
    return DiverseSetSelection(
        paths=tuple(cand_paths[i] for i in chosen.indices),
        indices=tuple(int(i) for i in chosen.indices),
        explained_variance=float(chosen.explained_variance), n_components=n_comp,
        n_candidates=len(cand_paths), n_space=len(paths), seed=int(seed),
    )


def _space_and_candidates(model: Callable, folder, pool_folder, batch_size: int, report):
    """``(paths, outputs, candidate paths, candidate outputs)``: ``folder``'s (the space), then
    ``pool_folder``'s, or without one ``folder``'s paths and None; reports after each folder."""
    paths, outputs = model_outputs_for_folder(model, folder, batch_size=batch_size)
    report(1, f"model outputs for {len(paths)} images")
    if pool_folder is None:
        return paths, outputs, paths, None
    cand_paths, pool = model_outputs_for_folder(model, pool_folder, batch_size=batch_size)
    report(2, f"model outputs for {len(cand_paths)} candidate images")
    return paths, outputs, cand_paths, pool


def _check_counts(k, n_components) -> int:
    """``k`` as an int; ValueError unless ``k`` and ``n_components`` are >= 1."""
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if int(n_components) < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components!r}")
    return k


def _check_enough_images(k: int, n_space: int, n_candidates: int, folder, pool_folder) -> None:
    """ValueError when ``k`` exceeds the readable images of the smaller folder."""
    limit = min(n_space, n_candidates)
    if k > limit:
        where = folder if pool_folder is None or n_space <= n_candidates else pool_folder
        raise ValueError(f"k={k} but {str(where)!r} holds only {limit} readable images; "
                         f"choose k <= {limit}")


def _paths_of(selection) -> list[Path]:
    items = selection.paths if isinstance(selection, DiverseSetSelection) else selection
    if isinstance(items, (str, Path)):
        raise TypeError("expected a sequence of paths, got a single path")
    paths = [Path(p) for p in items]
    if not paths:
        raise ValueError("no paths to write")
    return paths


def write_selection(selection, out_csv: str | Path, *, root: str | Path | None = None) -> Path:
    """Write the chosen files as a CSV with columns ``rank, path`` (rank 0 first).

    Parameters
    ----------
    selection : a :class:`DiverseSetSelection` or a sequence of paths.
    out_csv : file to write (parent folders are created); overwritten if present.
    root : when given, paths are written relative to it (each must lie under it).

    Returns
    -------
    The CSV's path.
    """
    paths = _paths_of(selection)
    if root is not None:
        root_p = Path(root).resolve()
        try:
            paths = [p.resolve().relative_to(root_p) for p in paths]
        except ValueError as exc:
            raise ValueError(f"every path must lie under root {str(root)!r}: {exc}") from None
    out = Path(out_csv).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(SELECTION_COLUMNS)
        writer.writerows((i, p.as_posix()) for i, p in enumerate(paths))
    return out


def read_selection(csv_path: str | Path, *, root: str | Path | None = None) -> list[Path]:
    """The paths of a :func:`write_selection` CSV in rank order (joined to ``root`` if given)."""
    with Path(csv_path).expanduser().open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != SELECTION_COLUMNS:
            raise ValueError(f"{str(csv_path)!r} is not a selection CSV: columns "
                             f"{reader.fieldnames}, expected {list(SELECTION_COLUMNS)}")
        rows = sorted(reader, key=lambda r: int(r["rank"]))
    base = Path(root) if root is not None else None
    return [base / r["path"] if base is not None else Path(r["path"]) for r in rows]


def copy_selection(selection, out_dir: str | Path) -> list[Path]:
    """Copy the chosen files into ``out_dir`` as ``000_name.ext``, ``001_...`` (rank order).

    The rank prefix keeps the order and keeps equal names from different folders apart.
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for i, p in enumerate(_paths_of(selection)):
        target = out / f"{i:03d}_{p.name}"
        shutil.copyfile(p, target)
        copied.append(target)
    return copied


# -- contact sheet --------------------------------------------------------------------------------
def _tile_image(item, tile: int):
    """One item as a square PIL image of ``tile`` px (centre crop, then resize)."""
    if isinstance(item, (str, Path)):
        with Image.open(item) as im:
            pil = im.convert("RGB")
    else:
        a = item.detach().cpu().numpy() if isinstance(item, Tensor) else np.asarray(item)
        if a.ndim == 3 and a.shape[0] == 3 and a.dtype != np.uint8:
            if not (np.all(np.isfinite(a)) and a.min() >= -1e-3 and a.max() <= 1 + 1e-3):
                raise ValueError("float images must lie in [0, 1]")
            a = np.round(np.clip(a, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
        if not (a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3):
            raise ValueError(f"images must be float (3, H, W) in [0, 1] or uint8 (H, W, 3); got "
                             f"{a.dtype} {a.shape}")
        pil = Image.fromarray(np.ascontiguousarray(a))
    w, h = pil.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    pil = pil.crop((left, top, left + side, top + side))
    return pil.resize((tile, tile), Image.Resampling.BILINEAR, reducing_gap=None)


def contact_sheet(items, *, columns: int, tile: int = 96, labels=None, pad: int = 2,
                  label_px: int = 12, background: int = 255) -> np.ndarray:
    """A grid of images: uint8 ``(H, W, 3)``, filled row by row.

    ``H = rows * (tile + label_px if labels else tile) + (rows + 1) * pad`` with
    ``rows = ceil(n / columns)``, and ``W = columns * tile + (columns + 1) * pad``.

    Parameters
    ----------
    items : sequence of image file paths, a Tensor ``(N, 3, H, W)`` in [0, 1], or a sequence of
        ``(3, H, W)`` float images in [0, 1] (Tensor or array) or uint8 ``(H, W, 3)`` arrays.
        Each is centre-cropped to a square and resized to ``tile`` px.
    columns : tiles per row, >= 1 (kept even when ``n < columns``).
    tile : tile side in px, >= 8.
    labels : None (no captions), True (file names, or the item index), or ``n`` strings; a
        caption strip of ``label_px`` px sits under each tile, cut to fit.
    pad : gap between tiles and around the sheet, >= 0 px; background : its gray level 0..255.
    """
    if isinstance(items, (str, Path)):
        raise TypeError("expected a sequence of images or paths, got a single path")
    items = list(items)
    n = len(items)
    if n == 0:
        raise ValueError("no images for the contact sheet")
    if int(columns) < 1 or int(tile) < 8 or int(pad) < 0 or not 0 <= int(background) <= 255:
        raise ValueError(f"need columns >= 1, tile >= 8, pad >= 0, background in 0..255; got "
                         f"{columns!r}, {tile!r}, {pad!r}, {background!r}")
    if labels is True:
        labels = [Path(it).name if isinstance(it, (str, Path)) else str(i)
                  for i, it in enumerate(items)]
    elif labels is not None:
        labels = [str(s) for s in labels]
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} images")
    if labels is not None and int(label_px) < 1:
        raise ValueError(f"label_px must be >= 1, got {label_px!r}")
    cap = int(label_px) if labels is not None else 0
    rows = math.ceil(n / columns)
    cell_h = tile + cap
    size = (columns * tile + (columns + 1) * pad, rows * cell_h + (rows + 1) * pad)
    sheet = Image.new("RGB", size, (int(background),) * 3)
    draw = ImageDraw.Draw(sheet)
    max_chars = max(1, tile // 6)
    for i, item in enumerate(items):
        r, c = divmod(i, columns)
        x, y = pad + c * (tile + pad), pad + r * (cell_h + pad)
        sheet.paste(_tile_image(item, tile), (x, y))
        if labels is not None:
            text = labels[i] if len(labels[i]) <= max_chars else labels[i][: max_chars - 1] + "~"
            draw.text((x + 1, y + tile), text, fill=(0, 0, 0))
    return np.asarray(sheet).copy()
