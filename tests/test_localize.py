"""Tests of signseg_core.neurons.localize: exact disks, shuffles that are permutations, a planted
region that the perturbation mask must find, hand-worked maps, background clearing and overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from signseg_core.neurons.localize import (
    LocalizationResult,
    background_clearing_effect,
    clear_background,
    mask_from_responses,
    mask_overlay,
    normalized_response_change,
    perturbation_mask,
)
from signseg_core.neurons.perturbation import disk_mask, perturbation_stimuli

SQUARE = (slice(96, 160), slice(32, 96))  # the planted 64 x 64 region of a 256 x 256 image


def _textured(h=256, w=256, seed=0) -> torch.Tensor:
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def _planted_score(reference: torch.Tensor):
    """Response = 1 - MSE to the reference inside SQUARE: only shuffles touching it lower it."""
    ref = reference[:, SQUARE[0], SQUARE[1]]

    def score(images: torch.Tensor) -> torch.Tensor:
        return 1.0 - ((images[:, :, SQUARE[0], SQUARE[1]] - ref) ** 2).mean(dim=(1, 2, 3))

    return score


# -- disks and shuffles -------------------------------------------------------------------------
def test_disk_mask_hand_worked():
    # D = 6 around (2.5, 2.5): only the 4 corners (distance^2 = 12.5 > 9) fall outside.
    d = disk_mask(6, 6, (2.5, 2.5), diameter=6)
    assert d.sum() == 32
    assert not d[0, 0] and not d[0, 5] and not d[5, 0] and not d[5, 5] and d[0, 1] and d[2, 0]
    big = disk_mask(256, 256, (24.5, 24.5), diameter=50)
    rows, cols = np.nonzero(big)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 49, 0, 49)
    assert abs(big.sum() - np.pi * 25**2) < 0.02 * np.pi * 25**2


def test_shuffle_is_a_permutation_inside_each_disk_only():
    image = _textured(48, 64, seed=1)
    before = image.clone()
    stim = perturbation_stimuli(image, n_disks=6, diameter=20, seed=3)
    assert torch.equal(image, before)  # input untouched
    assert stim.images.shape == (6, 3, 48, 64) and stim.centers.shape == (6, 2)
    for k in range(6):
        inside = torch.from_numpy(disk_mask(48, 64, stim.centers[k], diameter=20))
        out = stim.images[k]
        assert torch.equal(out[:, ~inside], image[:, ~inside])
        # RGB triples (channels moved together) are the same multiset inside the disk
        a = image[:, inside].T.numpy()
        b = out[:, inside].T.numpy()
        assert np.array_equal(a[np.lexsort(a.T)], b[np.lexsort(b.T)])
        assert not torch.equal(out[:, inside], image[:, inside])  # something moved


@settings(max_examples=30, deadline=None)
@given(h=st.integers(8, 40), w=st.integers(8, 40), diameter=st.integers(2, 8),
       seed=st.integers(0, 2**16))
def test_disks_lie_fully_inside(h, w, diameter, seed):
    stim = perturbation_stimuli(torch.rand(3, h, w), n_disks=5, diameter=diameter, seed=seed)
    half = (diameter - 1) / 2
    c = stim.centers
    assert np.all(c - half >= 0) and np.all(c[:, 0] + half <= h - 1)
    assert np.all(c[:, 1] + half <= w - 1)
    full = disk_mask(diameter, diameter, (half, half), diameter=diameter).sum()
    for center in c:  # never clipped by the border
        assert disk_mask(h, w, center, diameter=diameter).sum() == full


def test_seeded_determinism():
    image = _textured(64, 64)
    a = perturbation_stimuli(image, n_disks=4, diameter=16, seed=7)
    b = perturbation_stimuli(image, n_disks=4, diameter=16, seed=7)
    c = perturbation_stimuli(image, n_disks=4, diameter=16, seed=8)
    assert torch.equal(a.images, b.images) and np.array_equal(a.centers, b.centers)
    assert not np.array_equal(a.centers, c.centers)


# -- the mask -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_mask_finds_planted_region(seed):
    image = _textured()
    result = perturbation_mask(_planted_score(image), image, seed=seed)  # paper defaults
    square = np.zeros((256, 256), bool)
    square[SQUARE] = True
    m = result.mask
    recall = (m & square).sum() / square.sum()
    precision = (m & square).sum() / m.sum()
    assert recall > 0.8
    assert precision > 0.35  # chance is 64^2 / 256^2 = 0.0625
    assert m[square].mean() > 8 * m[~square].mean()
    peak = np.unravel_index(np.argmax(result.map), m.shape)
    assert 96 - 25 <= peak[0] < 160 + 25 and 32 - 25 <= peak[1] < 96 + 25
    assert result.map.max() == pytest.approx(1.0) and result.map.min() >= 0
    assert np.array_equal(result.mask, result.map >= 0.5)
    # disks away from the square do not change the response; those over it lower it
    far = [k for k, c in enumerate(result.centers)
           if not disk_mask(256, 256, c, diameter=50)[square].any()]
    assert np.allclose(result.changes[far], 0.0)
    assert result.changes.max() > 0


def test_batch_size_does_not_change_the_result():
    image = _textured()
    score = _planted_score(image)
    ref = perturbation_mask(score, image, n_disks=9, seed=2, batch_size=16)
    for bs in (1, 4):
        r = perturbation_mask(score, image, n_disks=9, seed=2, batch_size=bs)
        assert np.array_equal(r.map, ref.map) and np.array_equal(r.changes, ref.changes)


def test_mask_from_responses_hand_worked():
    # two 4-px disks on a 10 x 10 image, no smoothing; changes 0.8 and 0.2 (intact 10)
    centers = np.array([[2.5, 2.5], [2.5, 4.5]])
    d0 = disk_mask(10, 10, centers[0], diameter=4)
    d1 = disk_mask(10, 10, centers[1], diameter=4)
    r = mask_from_responses(10.0, [2.0, 8.0], centers, shape=(10, 10), diameter=4, sigma=0,
                            normalize="none")
    expected = np.zeros((10, 10))
    expected[d0 & ~d1], expected[d1 & ~d0], expected[d0 & d1] = 0.8, 0.2, 0.5
    assert np.allclose(r.change_map, expected) and np.allclose(r.map, expected)
    assert np.array_equal(r.mask, d0)  # 0.8 and the overlap's 0.5 pass a 0.5 threshold
    assert np.allclose(r.changes, [0.8, 0.2])
    r = mask_from_responses(10.0, [2.0, 8.0], centers, shape=(10, 10), diameter=4, sigma=0)
    assert np.allclose(r.map, expected / 0.8)  # "max": d1 alone 0.25, overlap 0.625
    assert np.array_equal(r.mask, d0)
    # changes 0.4 and 0.3: below 0.5 in absolute terms, above half the maximum everywhere
    small = np.zeros((10, 10))
    small[d0 & ~d1], small[d1 & ~d0], small[d0 & d1] = 0.4, 0.3, 0.35
    r = mask_from_responses(10.0, [6.0, 7.0], centers, shape=(10, 10), diameter=4, sigma=0,
                            normalize="none")
    assert np.allclose(r.map, small) and not r.mask.any()
    r = mask_from_responses(10.0, [6.0, 7.0], centers, shape=(10, 10), diameter=4, sigma=0)
    assert np.allclose(r.map, small / 0.4) and np.array_equal(r.mask, d0 | d1)
    assert r.area_fraction == pytest.approx((d0 | d1).mean())
    with pytest.raises(ValueError):
        r.map[0, 0] = 1.0  # read-only


def test_response_change_sign_and_bad_intact():
    assert np.allclose(normalized_response_change(4.0, [2.0, 6.0]), [0.5, -0.5])
    assert np.allclose(normalized_response_change(-4.0, [-6.0]), [0.5])  # a drop stays positive
    for bad in (0.0, float("nan")):
        with pytest.raises(ValueError, match="intact response"):
            normalized_response_change(bad, [1.0])
    with pytest.raises(ValueError, match="NaN"):
        normalized_response_change(1.0, [1.0, float("nan")])


def test_no_drop_gives_empty_mask_with_warning():
    image = _textured(32, 32)
    # a shuffle leaves the mean unchanged (up to float rounding) ...
    with pytest.warns(UserWarning, match="empty"):
        r = perturbation_mask(lambda x: x.mean(dim=(1, 2, 3)) + 1, image,
                              n_disks=3, diameter=8, sigma=2.0)
    assert not r.mask.any() and not r.map.any() and np.allclose(r.changes, 0, atol=1e-6)
    # ... and raises the distance to the original
    with pytest.warns(UserWarning, match="empty"):
        r = perturbation_mask(lambda x: 1 + ((x - image) ** 2).mean(dim=(1, 2, 3)), image,
                              n_disks=3, diameter=8, sigma=2.0)
    assert not r.mask.any() and np.all(r.changes < 0)


def test_bad_inputs_raise_clear_errors():
    image = _textured(32, 32)

    def mean_score(x):
        return x.mean(dim=(1, 2, 3))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        perturbation_mask(mean_score, torch.rand(4, 32, 32))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        perturbation_mask(mean_score, torch.rand(32, 32))
    with pytest.raises(ValueError, match="fully inside"):
        perturbation_mask(mean_score, image, diameter=50)  # 50-px disks, 32-px image
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        perturbation_mask(mean_score, image * 3, diameter=8)
    with pytest.raises(ValueError, match="intact response"):
        perturbation_mask(lambda x: torch.zeros(len(x)), image, diameter=8)
    with pytest.raises(ValueError, match="intact response"):
        perturbation_mask(lambda x: torch.full((len(x),), float("nan")), image, diameter=8)
    with pytest.raises(ValueError, match="score_fn must return shape"):
        perturbation_mask(lambda x: torch.ones(len(x), 2), image, diameter=8)
    with pytest.raises(ValueError, match="normalize"):
        perturbation_mask(mean_score, image, diameter=8, normalize="mean")
    with pytest.raises(ValueError, match="threshold"):
        perturbation_mask(mean_score, image, diameter=8, threshold=0)
    with pytest.raises(ValueError, match="fully inside"):
        mask_from_responses(1.0, [0.5], [[1.0, 1.0]], shape=(32, 32), diameter=8)


def test_zoo_model_scorer_runs(tiny):
    image = _textured(64, 64)
    r = perturbation_mask(lambda x: tiny(x)[:, 5] - tiny(image[None])[0, 5] + 3.0, image,
                          n_disks=6, diameter=16, sigma=6.0)
    assert isinstance(r, LocalizationResult) and r.map.shape == (64, 64) and r.changes.shape == (6,)


# -- background clearing and overlays ----------------------------------------------------------
def test_clear_background_keeps_mask_and_fills_rest():
    image = _textured(16, 20)
    mask = np.zeros((16, 20), bool)
    mask[4:9, 3:15] = True
    before = image.clone()
    for fill, value in (("gray", 0.5), ("white", 1.0), ("black", 0.0), (0.25, 0.25)):
        out = clear_background(image, mask, fill=fill)
        assert torch.equal(out[:, torch.from_numpy(mask)], image[:, torch.from_numpy(mask)])
        assert torch.all(out[:, torch.from_numpy(~mask)] == value)
    rgb = clear_background(image, mask, fill=(1.0, 0.0, 0.5))
    assert torch.equal(rgb[:, 0, 0], torch.tensor([1.0, 0.0, 0.5]))
    arr = clear_background(image.numpy().astype(np.float64), mask.astype(int))
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float64
    assert torch.equal(image, before)
    with pytest.raises(ValueError, match="mask has shape"):
        clear_background(image, np.ones((16, 16), bool))
    with pytest.raises(ValueError, match="boolean"):
        clear_background(image, np.full((16, 20), 0.3))
    with pytest.raises(ValueError, match="fill"):
        clear_background(image, mask, fill="pink")
    with pytest.raises(ValueError, match="fill"):
        clear_background(image, mask, fill=1.5)


def test_background_clearing_effect_hand_worked():
    image = torch.full((3, 10, 10), 0.2)
    mask = np.zeros((10, 10), bool)
    mask[:, :5] = True  # half kept at 0.2, half filled with 0.5 -> mean 0.35
    eff = background_clearing_effect(lambda x: x.mean(dim=(1, 2, 3)), image, mask)
    assert eff.intact == pytest.approx(0.2) and eff.cleared == pytest.approx(0.35)
    assert eff.relative_change == pytest.approx(0.75) and eff.fill == (0.5, 0.5, 0.5)
    assert eff.cleared_image.shape == (3, 10, 10)
    with pytest.raises(ValueError, match="intact response"):
        background_clearing_effect(lambda x: x.mean(dim=(1, 2, 3)) * 0, image, mask)


def test_mask_overlay_outline_and_tint():
    image = torch.zeros(3, 20, 20)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    out = mask_overlay(image, mask, width=1)
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    red = np.all(out == (255, 0, 0), axis=-1)
    assert red.sum() == 4 * 9 and red[5, 5:15].all() and not red[6:14, 6:14].any()
    assert not out[~mask].any()  # outside untouched (black)
    white = np.full((20, 20, 3), 255, np.uint8)
    tint = mask_overlay(white, mask, style="tint", alpha=1.0)
    assert np.all(tint[~mask] == 128) and np.all(tint[mask] == 255)
    soft = mask_overlay(white, np.full((20, 20), 0.5), style="tint", alpha=1.0)
    assert np.all(soft == round(0.5 * 255 + 0.5 * 128))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mask_overlay(image, np.full((20, 20), 2.0))
    with pytest.raises(ValueError, match="style"):
        mask_overlay(image, mask, style="glow")
    with pytest.raises(ValueError, match="mask has shape"):
        mask_overlay(image, np.ones((5, 5), bool))


def test_disk_size_and_smoothing_default_to_the_papers_scaled_to_the_image():
    """50 px and sigma 30 on 256 px (A.1): a 64-px image gets 12-px disks and sigma 7.5."""
    image = _textured(64, 64)
    loc = perturbation_mask(lambda x: x.mean(dim=(1, 2, 3)) + 1.0, image, n_disks=4,
                            warn_empty=False)
    assert (loc.diameter, loc.sigma) == (12, 7.5)
    assert perturbation_stimuli(image, n_disks=2).diameter == 12
