"""Choosing images and classes by clustering a model's 1000-d outputs.

* :func:`select_classes_by_clustering` — appendix A.1 "ImageNet subsampling" (Fig. 12): cluster
  the validation images by the L2 distance of their ResNet50 outputs into 100 clusters and take
  one new, unique class from each cluster.
* :func:`diverse_set` — appendix A.1 "Image dataset" (Fig. 9, *diverseSet*): PCA of the outputs
  (300 components), mini-batch k-means with ``k`` clusters, and the image nearest each center.
* :func:`model_outputs_for_folder` — the outputs of a zoo model for every image in a folder, the
  input both functions expect.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from signseg_core.models.zoo import load_image

__all__ = [
    "DiverseSelection",
    "diverse_set",
    "kept_components",
    "model_outputs_for_folder",
    "select_classes_by_clustering",
]

LINKAGES = ("average", "ward", "complete", "single")


def _as_matrix(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return a


def _pick_class(counts: np.ndarray, mean_logit: np.ndarray, used: np.ndarray) -> int:
    """Most frequent unused predicted class; else the unused class with the highest mean logit.

    Ties in count are broken by the higher mean logit, then the lower class index.
    """
    n_classes = counts.size
    # lexsort: last key is primary. Sort by count desc, mean logit desc, class index asc.
    order = np.lexsort((np.arange(n_classes), -mean_logit, -counts))
    for c in order:
        if counts[c] == 0:
            break
        if not used[c]:
            return int(c)
    order = np.lexsort((np.arange(n_classes), -mean_logit))
    return int(next(c for c in order if not used[c]))


def select_classes_by_clustering(
    logits,
    *,
    n_clusters: int = 100,
    linkage: str = "average",
    predicted=None,
    max_images: int | None = None,
    seed: int = 0,
) -> list[int]:
    """One unique class per cluster of images clustered by their output vectors (Fig. 12).

    The images are clustered agglomeratively on the Euclidean (L2) distance between their output
    vectors. Clusters are then visited largest first (ties: the cluster holding the lowest image
    index first); each takes the most frequent predicted class among its images that no earlier
    cluster took, and when every class predicted in it is taken, the untaken class with the highest
    mean logit over its images. The result is deterministic.

    Memory: agglomerative clustering without a connectivity graph (every linkage here, ward
    included) builds the condensed pairwise distance matrix, ``N (N - 1) / 2`` float64 values:
    about 1.6 GB for 20 000 images and 10 GB for the paper's 50 000, and time grows as ``N^2``
    too (5 000 images take ~6 s on two CPU cores, so 50 000 take ~10 min). On a small machine
    pass ``max_images`` (e.g. 15 000) to cluster a seeded random subset.

    Parameters
    ----------
    logits : array ``(N, n_classes)`` of model outputs (pre-softmax), e.g. ``(50000, 1000)``.
    n_clusters : number of clusters, which is also the number of classes returned;
        ``1 <= n_clusters <= min(N, n_classes)``.
    linkage : ``"average"`` (default; valid for a plain L2 distance matrix), ``"ward"``,
        ``"complete"`` or ``"single"``.
    predicted : optional int array ``(N,)`` of each image's class in ``[0, n_classes)``; default
        ``argmax(logits, axis=1)``.
    max_images : cluster at most this many images, drawn without replacement by
        ``np.random.default_rng(seed)``; ``None`` uses all.
    seed : seed of the subsample (unused without ``max_images``).

    Returns
    -------
    list of ``n_clusters`` distinct class indices, in the order the clusters were visited.

    Raises
    ------
    ValueError
        If there are fewer images (after subsampling) or classes than clusters, or an argument is
        out of range.
    """
    x = _as_matrix(logits, "logits")
    if linkage not in LINKAGES:
        raise ValueError(f"unknown linkage {linkage!r}; choose from {list(LINKAGES)}")
    pred = _predicted_classes(x, predicted)
    if max_images is not None:
        x, pred = _subsample(x, pred, max_images, seed)
    n_clusters = _check_n_clusters(n_clusters, *x.shape)
    labels = _cluster_labels(x, n_clusters, linkage)
    return _one_class_per_cluster(x, pred, labels, n_clusters)


def _check_n_clusters(n_clusters, n_images: int, n_classes: int) -> int:
    """``n_clusters`` as an int in ``[1, min(n_images, n_classes)]``, else ValueError."""
    n_clusters = int(n_clusters)
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    if n_clusters > n_images:
        raise ValueError(f"cannot make {n_clusters} clusters from {n_images} images")
    if n_clusters > n_classes:
        raise ValueError(f"cannot pick {n_clusters} unique classes out of {n_classes}")
    return n_clusters


def _predicted_classes(x: np.ndarray, predicted) -> np.ndarray:
    """``predicted`` checked against ``x`` (N, n_classes), or ``argmax(x, axis=1)`` when None."""
    n_images, n_classes = x.shape
    if predicted is None:
        return x.argmax(axis=1)
    pred = np.asarray(predicted)
    if pred.shape != (n_images,) or not np.issubdtype(pred.dtype, np.integer):
        raise ValueError(f"predicted must be an int array of shape ({n_images},)")
    if pred.min() < 0 or pred.max() >= n_classes:
        raise ValueError(f"predicted classes must lie in [0, {n_classes}), got "
                         f"[{pred.min()}, {pred.max()}]")
    return pred


def _subsample(x: np.ndarray, pred: np.ndarray, max_images, seed: int):
    """At most ``max_images`` rows of ``x`` and ``pred``, drawn without replacement by
    ``np.random.default_rng(seed)`` and kept in their original order."""
    if int(max_images) < 1:
        raise ValueError(f"max_images must be >= 1 or None, got {max_images!r}")
    if len(x) <= max_images:
        return x, pred
    keep = np.sort(np.random.default_rng(seed).choice(len(x), max_images, replace=False))
    return x[keep], pred[keep]


def _cluster_labels(x: np.ndarray, n_clusters: int, linkage: str) -> np.ndarray:
    """Agglomerative cluster of each row of ``x`` on the L2 distance, ``(N,)`` ints."""
    from sklearn.cluster import AgglomerativeClustering  # deferred: sklearn takes ~1 s to import

    if n_clusters == 1:
        return np.zeros(len(x), dtype=int)
    return AgglomerativeClustering(
        n_clusters=n_clusters, linkage=linkage, metric="euclidean"
    ).fit_predict(x)


def _one_class_per_cluster(x: np.ndarray, pred: np.ndarray, labels: np.ndarray,
                           n_clusters: int) -> list[int]:
    """Visit clusters largest first (ties: lowest first image) and take a class from each."""
    n_classes = x.shape[1]
    sizes = np.bincount(labels, minlength=n_clusters)
    first = np.array([np.flatnonzero(labels == c)[0] for c in range(n_clusters)])
    visit = np.lexsort((first, -sizes))

    used = np.zeros(n_classes, dtype=bool)
    chosen: list[int] = []
    for c in visit:
        members = labels == c
        counts = np.bincount(pred[members], minlength=n_classes)
        cls = _pick_class(counts, x[members].mean(axis=0), used)
        used[cls] = True
        chosen.append(cls)
    return chosen


class DiverseSelection(NamedTuple):
    """What :func:`diverse_set` returns; unpacks as ``indices, explained_variance``."""

    indices: np.ndarray  # (k,) int, distinct rows of the pool, one per k-means center
    explained_variance: float  # sum of the kept PCA components' explained variance ratios, [0, 1]


def diverse_set(
    outputs,
    *,
    k: int,
    n_components: int = 300,
    seed: int = 0,
    pool=None,
) -> DiverseSelection:
    """Pick ``k`` images that span a model's output space (the paper's *diverseSet*, Fig. 9).

    PCA is fitted on ``outputs`` keeping ``min(n_components, N - 1, D)`` components (at least
    one), ``MiniBatchKMeans`` (``random_state=seed``) finds ``k`` centers in that space, and each
    center takes the pool image nearest to it. Centers claim images in order of their nearest
    distance (closest first); a center whose nearest image is taken gets its nearest untaken one,
    so the indices are distinct.

    Parameters
    ----------
    outputs : array ``(N, D)`` of outputs defining the space (the paper: AlexNet's 1000-d
        pre-softmax outputs of the 50k ImageNet validation images).
    k : number of images, ``1 <= k <= N`` and ``k <=`` the pool size.
    n_components : PCA components to keep at most (the paper: 300, about 95% of the variance).
    seed : seed of PCA's and k-means' random state.
    pool : optional array ``(M, D)`` of candidate images' outputs to pick from, projected with
        the same PCA (the paper maps other datasets into the space); default ``outputs``.

    Returns
    -------
    DiverseSelection(indices ``(k,)`` int rows of the pool in center order, explained_variance).
    """
    x = _as_matrix(outputs, "outputs")
    cand = x if pool is None else _as_matrix(pool, "pool")
    if cand.shape[1] != x.shape[1]:
        raise ValueError(f"pool has {cand.shape[1]} columns but outputs have {x.shape[1]}")
    k = int(k)
    if not 1 <= k <= min(x.shape[0], cand.shape[0]):
        raise ValueError(f"k must lie in [1, {min(x.shape[0], cand.shape[0])}] "
                         f"(images available), got {k}")
    if int(n_components) < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components!r}")
    n_comp = kept_components(n_components, *x.shape)
    pca, emb, centers = _pca_kmeans(x, n_comp, k, seed)
    explained = float(np.sum(pca.explained_variance_ratio_)) if x.shape[0] > 1 else 1.0
    cand_emb = emb if pool is None else pca.transform(cand)
    return DiverseSelection(_nearest_distinct(centers, cand_emb), explained)


def kept_components(n_components: int, n_images: int, n_dims: int) -> int:
    """PCA components :func:`diverse_set` keeps: ``min(n_components, n_images - 1, n_dims)``,
    at least 1 (a fit on ``n_images`` rows of ``n_dims`` outputs has no more)."""
    return max(1, min(int(n_components), n_images - 1, n_dims))


def _pca_kmeans(x: np.ndarray, n_comp: int, k: int, seed: int):
    """PCA fitted on ``x``, the projection of ``x`` and the ``k`` mini-batch k-means centres
    ``(k, n_comp)`` in it, both with ``random_state=seed``."""
    from sklearn.cluster import MiniBatchKMeans  # deferred: sklearn takes ~1 s to import
    from sklearn.decomposition import PCA  # deferred: sklearn takes ~1 s to import

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # one image: 0/0 variance, fine
        pca = PCA(n_components=n_comp, random_state=seed).fit(x)
    emb = pca.transform(x)
    kmeans = MiniBatchKMeans(
        n_clusters=k, random_state=seed, n_init=3, batch_size=min(1024, x.shape[0])
    ).fit(emb)
    return pca, emb, kmeans.cluster_centers_


def _nearest_distinct(centers: np.ndarray, cand_emb: np.ndarray) -> np.ndarray:
    """For each centre the nearest candidate row, distinct: centres claim in order of their
    nearest distance (closest first), and one whose nearest is taken gets its nearest untaken."""
    d2 = (
        np.sum(centers**2, axis=1)[:, None]
        - 2.0 * centers @ cand_emb.T
        + np.sum(cand_emb**2, axis=1)[None, :]
    )
    ranked = np.argsort(d2, axis=1, kind="stable")
    taken = np.zeros(cand_emb.shape[0], dtype=bool)
    indices = np.empty(len(centers), dtype=int)
    for c in np.argsort(d2.min(axis=1), kind="stable"):
        i = next(j for j in ranked[c] if not taken[j])
        taken[i] = True
        indices[c] = i
    return indices


def _run_batch(model: Callable, images: list[torch.Tensor]) -> np.ndarray:
    """Logits of a list of ``(3, H, W)`` images whose sizes may differ (same sizes run together)."""
    out: list[np.ndarray | None] = [None] * len(images)
    shapes: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        shapes.setdefault(tuple(im.shape), []).append(i)
    for idx in shapes.values():
        logits = model(torch.stack([images[i] for i in idx]))
        arr = logits.detach().float().cpu().numpy()
        for i, row in zip(idx, arr):
            out[i] = row
    return np.stack(out)


def model_outputs_for_folder(
    model: Callable,
    folder: str | Path,
    *,
    batch_size: int = 32,
    extensions: Sequence[str] = (".jpg", ".jpeg", ".png"),
) -> tuple[list[Path], np.ndarray]:
    """The model's outputs for every image file directly inside ``folder``.

    Files are taken in sorted name order, matched on extension case-insensitively (subfolders are
    not searched), decoded with PIL, converted to RGB and scaled to [0, 1] at their own size (a
    :class:`~signseg_core.models.zoo.ZooModel` crops and resizes). Files that cannot be decoded are
    skipped with one ``UserWarning`` listing them.

    Parameters
    ----------
    model : callable on a float tensor ``(n, 3, H, W)`` in [0, 1] returning ``(n, C)`` outputs,
        e.g. ``signseg_core.models.registry.load_model(name)``; it moves the images to its device.
    folder : directory of images.
    batch_size : images per forward pass, >= 1.
    extensions : file name endings to read.

    Returns
    -------
    (paths, logits) : the ``N`` files read, and their outputs, float32 array ``(N, C)``.

    Raises
    ------
    FileNotFoundError
        If ``folder`` is not a directory.
    ValueError
        If it holds no file with one of ``extensions``, or none of them could be read.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist or is not a folder")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    files = _image_files(folder, extensions)
    with torch.inference_mode():
        paths, skipped, chunks = _outputs_in_batches(model, files, batch_size)
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} unreadable file(s) in {str(folder)!r}: {', '.join(skipped)}",
            UserWarning,
            stacklevel=2,
        )
    if not paths:
        raise ValueError(f"none of the {len(files)} image file(s) in {str(folder)!r} could be read")
    return paths, np.concatenate(chunks, axis=0).astype(np.float32, copy=False)


def _image_files(folder: Path, extensions: Sequence[str]) -> list[Path]:
    """The files directly in ``folder`` ending in one of ``extensions`` (any case), sorted."""
    exts = tuple(e.lower() for e in extensions)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise ValueError(f"no images in {str(folder)!r} (looked for {', '.join(exts)})")
    return files


def _outputs_in_batches(model: Callable, files: list[Path], batch_size: int):
    """``(paths read, unreadable "name (Error)" strings, output chunks)`` of ``files``."""
    paths: list[Path] = []
    skipped: list[str] = []
    chunks: list[np.ndarray] = []
    batch: list[torch.Tensor] = []
    for path in files:
        try:
            batch.append(load_image(path))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            skipped.append(f"{path.name} ({type(exc).__name__})")
            continue
        paths.append(path)
        if len(batch) == batch_size:
            chunks.append(_run_batch(model, batch))
            batch = []
    if batch:
        chunks.append(_run_batch(model, batch))
    return paths, skipped, chunks
