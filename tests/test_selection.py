"""Tests of signseg_core.stimuli.selection on generated outputs with planted structure, and real
PNGs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from signseg_core.models.registry import load_model
from signseg_core.stimuli.selection import (
    diverse_set,
    model_outputs_for_folder,
    select_classes_by_clustering,
)

N_CLASSES = 1000


def _class_blobs(classes, sizes, *, height=20.0, sigma=0.2, seed=0, extra=None):
    """Logits of blobs centred on ``height * e_c``; blob j predicts class ``classes[j]``.

    Within a blob points lie ~sqrt(2 * 1000) * 0.2 ≈ 9 apart, blobs ≥ 20 * sqrt(2) ≈ 28 apart.
    ``extra`` maps a blob index to {class: logit} added to its centre.
    """
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for j, (c, n) in enumerate(zip(classes, sizes)):
        centre = np.zeros(N_CLASSES)
        centre[c] = height
        for k, v in (extra or {}).get(j, {}).items():
            centre[k] += v
        parts.append(centre + sigma * rng.normal(size=(n, N_CLASSES)))
        labels += [j] * n
    return np.concatenate(parts), np.array(labels)


PLANTED = [3, 17, 250, 999, 42, 600, 8, 731, 512, 100]


@pytest.mark.parametrize("linkage", ["average", "ward"])
def test_selects_the_planted_class_of_each_blob(linkage):
    logits, _ = _class_blobs(PLANTED, [20] * 10)
    chosen = select_classes_by_clustering(logits, n_clusters=10, linkage=linkage)
    assert len(chosen) == 10 and len(set(chosen)) == 10
    assert sorted(chosen) == sorted(PLANTED)
    assert all(isinstance(c, int) for c in chosen)


def test_deterministic_and_order_independent():
    logits, _ = _class_blobs(PLANTED, [15 + j for j in range(10)])  # distinct sizes: fixed order
    a = select_classes_by_clustering(logits, n_clusters=10)
    assert a == select_classes_by_clustering(logits, n_clusters=10)
    perm = np.random.default_rng(1).permutation(len(logits))
    assert a == select_classes_by_clustering(logits[perm], n_clusters=10)
    assert a == PLANTED[::-1]  # visited largest cluster first


def test_falls_back_to_highest_mean_logit_when_predicted_class_is_taken():
    # Blob 0 (30 images) and blob 1 (20 images) both predict class 5 (20 vs 18 for class 7 in
    # blob 1). Blob 0 is visited first and takes 5; blob 1 has no untaken predicted class and
    # takes its highest-mean-logit untaken class, 7.
    logits, _ = _class_blobs([5, 5], [30, 20], extra={1: {7: 18.0}})
    assert (logits[30:].argmax(axis=1) == 5).all()
    assert select_classes_by_clustering(logits, n_clusters=2) == [5, 7]


def test_next_most_frequent_predicted_class_beats_mean_logit():
    logits, _ = _class_blobs([5, 5], [30, 20], extra={1: {7: 18.0}})
    predicted = np.array([5] * 30 + [5] * 12 + [9] * 8)
    assert select_classes_by_clustering(logits, n_clusters=2, predicted=predicted) == [5, 9]


def test_max_images_subsample_is_seeded():
    logits, _ = _class_blobs(PLANTED, [30] * 10)
    a = select_classes_by_clustering(logits, n_clusters=10, max_images=120, seed=3)
    assert sorted(a) == sorted(PLANTED)
    assert a == select_classes_by_clustering(logits, n_clusters=10, max_images=120, seed=3)


def test_clustering_validates():
    logits, _ = _class_blobs([1, 2], [3, 2])
    with pytest.raises(ValueError, match="6 clusters from 5 images"):
        select_classes_by_clustering(logits, n_clusters=6)
    with pytest.raises(ValueError, match="4 unique classes out of 3"):
        select_classes_by_clustering(np.random.default_rng(0).normal(size=(10, 3)), n_clusters=4)
    with pytest.raises(ValueError, match="ward"):
        select_classes_by_clustering(logits, n_clusters=2, linkage="centroid")
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        select_classes_by_clustering(logits, n_clusters=2, predicted=np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="NaN"):
        select_classes_by_clustering(np.full((4, 3), np.nan), n_clusters=2)


# -- diverse_set -----------------------------------------------------------------------------

def _blobs(k, n, *, seed=0, dim=N_CLASSES):
    rng = np.random.default_rng(seed)
    centres = 90.0 * rng.normal(size=(k, dim)) / np.sqrt(dim)  # ~90 apart; spread ~13
    x = np.repeat(centres, n, axis=0) + 0.3 * rng.normal(size=(k * n, dim))
    return x, np.repeat(np.arange(k), n)


def test_diverse_set_takes_one_image_per_blob():
    x, blob = _blobs(6, 30)
    sel = diverse_set(x, k=6)
    idx, explained = sel  # unpacks as a tuple
    assert idx.shape == (6,) and len(set(idx.tolist())) == 6
    assert sorted(blob[idx].tolist()) == list(range(6))
    assert explained == pytest.approx(1.0)  # min(300, N - 1) = 179 components: all the variance
    assert np.array_equal(diverse_set(x, k=6).indices, idx)  # seeded


def test_diverse_set_fewer_components_explain_less():
    x, _ = _blobs(6, 30)
    assert diverse_set(x, k=6, n_components=2).explained_variance < 0.9


def test_diverse_set_hand_worked_nearest_images():
    # two clusters on a line: means 0.1333 and 10.1667, nearest rows 1 (0.1) and 4 (10.2)
    x = np.array([[0.0, 0.0], [0.1, 0.0], [0.3, 0.0], [10.0, 0.0], [10.2, 0.0], [10.3, 0.0]])
    assert sorted(diverse_set(x, k=2).indices.tolist()) == [1, 4]


def test_diverse_set_k_equal_n_uses_every_image_once():
    x, _ = _blobs(3, 4)
    assert sorted(diverse_set(x, k=12).indices.tolist()) == list(range(12))


def test_diverse_set_picks_from_a_separate_pool():
    x, blob = _blobs(5, 20)
    pool, pool_blob = x[1::2], blob[1::2]
    idx = diverse_set(x[::2], k=5, pool=pool).indices
    assert idx.max() < len(pool)
    assert sorted(pool_blob[idx].tolist()) == list(range(5))


def test_diverse_set_validates():
    x, _ = _blobs(2, 3)
    with pytest.raises(ValueError, match=r"k must lie in \[1, 6\]"):
        diverse_set(x, k=7)
    with pytest.raises(ValueError, match="columns"):
        diverse_set(x, k=2, pool=x[:, :5])


# -- model_outputs_for_folder ------------------------------------------------------------------

def _png(path, size, *, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (size[1], size[0], channels) if channels else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode).save(path)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny_test")


def test_outputs_for_folder_skips_corrupt_files(tmp_path, tiny):
    _png(tmp_path / "b.png", (32, 32), seed=1)
    _png(tmp_path / "a.PNG", (40, 24), mode="RGBA", seed=2)
    _png(tmp_path / "c.png", (64, 64), mode="L", seed=3)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable.*broken\.png"):
        paths, logits = model_outputs_for_folder(tiny, tmp_path, batch_size=2)
    assert [p.name for p in paths] == ["a.PNG", "b.png", "c.png"]
    assert logits.shape == (3, 1000) and logits.dtype == np.float32
    # each row is the model's output for that image alone, read as RGB in [0, 1]
    for p, row in zip(paths, logits):
        arr = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0
        with torch.no_grad():
            ref = tiny(torch.from_numpy(arr).permute(2, 0, 1)[None]).numpy()[0]
        np.testing.assert_allclose(row, ref, rtol=1e-5, atol=1e-5)
    # batch-size independent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, logits1 = model_outputs_for_folder(tiny, tmp_path, batch_size=1)
    np.testing.assert_allclose(logits1, logits, rtol=1e-5, atol=1e-5)


def test_outputs_for_folder_errors(tmp_path, tiny):
    with pytest.raises(ValueError, match="no images"):
        model_outputs_for_folder(tiny, tmp_path)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="no images"):
        model_outputs_for_folder(tiny, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model_outputs_for_folder(tiny, tmp_path / "missing")
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="bad.jpg"), \
            pytest.raises(ValueError, match="could be read"):
        model_outputs_for_folder(tiny, tmp_path)
