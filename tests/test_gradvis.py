"""Gradient feature visualization: exact objectives and geometry, rising objectives, clean hooks,
an untouched shared model, seeded per-channel streams."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from signseg_core.models.imagenet import class_names
from signseg_core.models.registry import load_model
from signseg_core.models.zoo import ZooModel
from signseg_core.optimize.gradvis import (
    LUCENT_ROTATIONS,
    LUCENT_SCALES,
    GradVisConfig,
    _fft_scale,
    affine_matrices,
    channel_objective,
    draw_transforms,
    extreme_sender_channels,
    layer_channels,
    transform_images,
    visualize_channels,
)
from signseg_core.optimize.layer_capture import capture_layer

FAST = GradVisConfig(steps=20, image_size=32)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny_test")


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0")


def _hook_count(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def _red_detector() -> ZooModel:
    """A 16-px network whose layer "0" channel 0 reads +red and channel 1 reads -red."""
    conv = nn.Conv2d(3, 2, 1)
    readout = nn.Linear(2, 1000)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0] = 1.0
        conv.weight[1, 0] = -1.0
        readout.weight.zero_()
        readout.bias.zero_()
    net = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), readout)
    return ZooModel(name="red", module=net, input_size=16, mean=(0.5,) * 3, std=(0.5,) * 3,
                    class_names=class_names(), trained=False, weights_source="hand-set")


# -- exact pieces ----------------------------------------------------------------------------

def test_channel_objective_hand_worked():
    acts = torch.arange(24.0).reshape(2, 3, 2, 2)  # image 0 channel 2: 8..11; image 1 ch 0: 12..15
    assert channel_objective(acts, torch.tensor([2, 0])).tolist() == [9.5, 13.5]
    flat = torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])
    assert channel_objective(flat, torch.tensor([1, 2])).tolist() == [-2.0, -6.0]
    with pytest.raises(ValueError, match="channels"):
        channel_objective(acts, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        channel_objective(torch.zeros(2, 3, 4), torch.tensor([0, 1]))


def test_fft_scale_is_lucents_inverse_frequency():
    scale = _fft_scale(8, 1.0)  # frequencies k/8 cycles per pixel: 1/f = 8/k, DC clamped to 8
    assert scale.shape == (8, 5)
    assert scale[0, 0] == 8 and scale[0, 1] == 8 and scale[0, 4] == 2 and scale[4, 0] == 2
    assert scale[3, 4].item() == pytest.approx(8 / 5)
    assert torch.equal(_fft_scale(8, 0.0), torch.ones(8, 5))


def _grey(x):
    return bool(torch.all((x - 0.5).abs() < 1e-6))


def test_affine_geometry_identity_shift_rotation_and_pad():
    img = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))

    def move(shift, angle_deg=0.0, scale=1.0, pad=0):
        theta = affine_matrices(torch.tensor([shift], dtype=torch.float64),
                                 torch.tensor([scale], dtype=torch.float64),
                                 torch.tensor([math.radians(angle_deg)], dtype=torch.float64),
                                 size=6, canvas=6 + 2 * pad)
        return transform_images(img, theta, 6 + 2 * pad)

    torch.testing.assert_close(move((0, 0)), img)
    shifted = move((1, 2))  # content moves right 1 px, down 2 px; grey comes in
    torch.testing.assert_close(shifted[..., 2:, 1:], img[..., :-2, :-1])
    assert _grey(shifted[..., :2, :]) and _grey(shifted[..., :, :1])
    torch.testing.assert_close(move((0, 0), 90.0), torch.rot90(img, -1, dims=(-2, -1)),
                               atol=1e-5, rtol=0)
    padded = move((0, 0), pad=2)
    assert padded.shape == (1, 3, 10, 10)
    torch.testing.assert_close(padded[..., 2:-2, 2:-2], img)
    assert _grey(padded[..., :2, :]) and _grey(padded[..., :, -2:])
    halved = move((0, 0), scale=0.5, pad=0)  # shrunk to the middle 3 px, grey around
    assert _grey(halved[..., 0, :])
    torch.testing.assert_close(halved[..., 2:4, 2:4].mean(), img[..., 1:5, 1:5].mean(), atol=0.2,
                               rtol=0)


def test_transform_draws_are_seeded_and_in_range():
    cfg = GradVisConfig(steps=50, jitter=3, scales=(0.5, 2.0), rotate_degrees=(-90, 90))

    def draw(seed):
        return draw_transforms(cfg, [torch.Generator().manual_seed(seed) for _ in range(2)])

    shift, scale, angle = draw(0)
    assert shift.shape == (50, 2, 2) and scale.shape == angle.shape == (50, 2)
    assert shift.abs().max() == 3 and set(scale.unique().tolist()) == {0.5, 2.0}
    assert set(angle.unique().tolist()) == {-math.pi / 2, math.pi / 2}
    assert all(torch.equal(a, b) for a, b in zip(draw(0), draw(0)))
    assert not torch.equal(draw(0)[0], draw(1)[0])


def test_extreme_sender_channels_hand_worked():
    conv = nn.Conv2d(4, 3, 1)
    with torch.no_grad():  # columns = senders: +++, ---, ++-, +--
        conv.weight[:, :, 0, 0] = torch.tensor(
            [[1.0, -1.0, 2.0, 1.0], [2.0, -3.0, 1.0, -1.0], [1.0, -1.0, -1.0, -2.0]])
    assert extreme_sender_channels(conv, k=1) == ([0], [1])
    assert extreme_sender_channels(conv, k=2) == ([0, 2], [1, 3])
    with pytest.raises(ValueError, match="4 sender channels"):
        extreme_sender_channels(conv, k=3)
    assert layer_channels(conv, "input") == 4 and layer_channels(conv, "output") == 3


# -- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, name", [
    (dict(steps=0), "steps"), (dict(steps=2.0), "steps"), (dict(lr=0.0), "lr"),
    (dict(lr=float("nan")), "lr"), (dict(image_size=4), "image_size"), (dict(param="gan"), "fft"),
    (dict(decay=-1.0), "decay"), (dict(jitter=-1), "jitter"), (dict(pad=True), "pad"),
    (dict(scales=()), "scales"), (dict(scales=(1.0, 0.0)), "scales"),
    (dict(rotate_degrees=(float("inf"),)), "rotate_degrees"), (dict(seed=-1), "seed"),
    (dict(decorrelate="yes"), "decorrelate"), (dict(param="fourier", decorrelate=False), "fourier"),
    (dict(param="fourier", image_size=16), "image_size"),
])
def test_config_rejects_bad_values_by_name(bad, name):
    with pytest.raises(ValueError, match=name):
        GradVisConfig(**bad)


def test_config_is_hashable_data():
    cfg = GradVisConfig(scales=[1, 1.5], rotate_degrees=[0])
    assert cfg.scales == (1.0, 1.5) and cfg.rotate_degrees == (0.0,)
    assert hash(cfg) == hash(GradVisConfig(scales=(1.0, 1.5), rotate_degrees=(0.0,)))
    d = GradVisConfig().to_dict()
    assert d["param"] == "fft" and d["scales"] == LUCENT_SCALES
    assert d["rotate_degrees"] == LUCENT_ROTATIONS and d["seed"] == 0


# -- optimisation ------------------------------------------------------------------------------

def test_red_detector_turns_images_red_and_cyan():
    model = _red_detector()
    cfg = GradVisConfig(steps=40, image_size=16, lr=0.1)
    result = visualize_channels(model, "0", [0, 1], config=cfg)
    red = result.images[:, 0].mean((1, 2))
    assert red[0] > 0.7 and red[1] < 0.3  # from 0.5 grey: channel 0 wants red, channel 1 none
    # the objective is (red - 0.5) / 0.5 averaged over the image, exactly
    expected = torch.stack([2 * red[0] - 1, 1 - 2 * red[1]])
    torch.testing.assert_close(result.final_objective, expected)


@pytest.mark.parametrize("layer, channels, param, least", [
    ("0", [0, 3, 7], "fft", 0.2), ("2", [0, 1, 9, 15], "fft", 0.2), ("2", [1, 9], "fourier", 0.2),
    ("6", [0, 500, 999], "fft", 0.015),  # linear layer: (N, C); a random readout moves slowly
])
def test_objective_rises_on_tiny(tiny, layer, channels, param, least):
    result = visualize_channels(tiny, layer, channels,
                                config=GradVisConfig(steps=40, image_size=32, param=param))
    rise = result.final_objective - result.initial_objective
    assert torch.all(rise > least * result.initial_objective.abs().mean()), rise
    assert torch.all(result.trajectory[-5:].mean(0) > result.trajectory[:5].mean(0))
    n = len(channels)
    assert result.images.shape == (n, 3, 32, 32) and result.images.dtype == torch.float32
    assert result.images.min() >= 0 and result.images.max() <= 1
    assert result.trajectory.shape == (40, n) and result.steps_run == 40 and not result.cancelled
    assert result.uint8().shape == (n, 32, 32, 3) and result.uint8().dtype == np.uint8


def test_objective_rises_on_efficientnet(lite0):
    result = visualize_channels(lite0, "_blocks.1._project_conv", [3, 7],
                                config=GradVisConfig(steps=8, image_size=64))
    rise = result.final_objective - result.initial_objective
    assert torch.all(rise > 0.15), rise
    assert result.images.shape == (2, 3, 64, 64)


def test_input_site_reads_sender_channels(tiny):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    net = tiny.module
    with torch.no_grad():
        expected = F.relu(net[2](F.relu(net[0](x)))).mean((2, 3))  # what the linear layer reads
        with capture_layer(net, tiny.layer("6"), site="input") as cap:
            torch.testing.assert_close(cap(x), expected)
    result = visualize_channels(tiny, "6", [1, 8, 15, 2], site="input", config=FAST)
    rise = result.final_objective - result.initial_objective
    assert torch.all(rise[:3] > 0.01), rise
    assert result.initial_objective[3] == result.final_objective[3] == 0  # dead after ReLU: stuck
    with pytest.raises(ValueError, match="0 to 15"):
        visualize_channels(tiny, "6", [16], site="input", config=FAST)


def test_capture_stops_early_and_removes_hooks(tiny):
    later = []
    handle = tiny.layer("6").register_forward_hook(lambda *_: later.append(1))
    try:
        x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.no_grad(), capture_layer(tiny.module, tiny.layer("2")) as cap:
            assert cap(x).shape == (1, 16, 8, 8) and later == []  # stopped after layer "2"
            tiny.module(x)  # a plain call runs through and still records
            assert later == [1] and cap.value.shape == (1, 16, 8, 8)
    finally:
        handle.remove()
    assert _hook_count(tiny.module) == 0
    with pytest.raises(KeyError), capture_layer(tiny.module, tiny.layer("0"), site="input"):
        assert _hook_count(tiny.module) == 1
        raise KeyError("boom")
    assert _hook_count(tiny.module) == 0


def test_hooks_removed_after_cancel_and_error(tiny):
    calls = []
    result = visualize_channels(tiny, "2", [1, 2], config=FAST,
                                should_stop=lambda: calls.append(1) or len(calls) > 3)
    assert result.cancelled and result.steps_run == 3 and result.trajectory.shape == (3, 2)
    assert _hook_count(tiny.module) == 0

    def fail(done, total, objective):
        assert total == 20 and objective.shape == (2,)
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        visualize_channels(tiny, "2", [1, 2], config=FAST, progress=fail)
    assert _hook_count(tiny.module) == 0


def test_shared_model_unchanged(tiny):
    before = {k: v.clone() for k, v in tiny.module.state_dict().items()}
    hooks_seen = []  # other threads may use the shared model meanwhile: it never carries a hook
    visualize_channels(tiny, "2", [0, 1], config=FAST,
                       progress=lambda *_: hooks_seen.append(_hook_count(tiny.module)))
    assert hooks_seen == [0] * FAST.steps
    after = tiny.module.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad and p.grad is None for p in tiny.module.parameters())
    assert not tiny.module.training and _hook_count(tiny.module) == 0


def test_channel_image_independent_of_batch_and_seeded(tiny):
    pair = visualize_channels(tiny, "2", [3, 5], config=FAST)
    alone = visualize_channels(tiny, "2", [3], config=FAST)
    swapped = visualize_channels(tiny, "2", [5, 3], config=FAST)
    torch.testing.assert_close(pair.images[0], alone.images[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(pair.images[0], swapped.images[1], atol=1e-4, rtol=0)
    again = visualize_channels(tiny, "2", [3, 5], config=FAST)
    assert torch.equal(pair.images, again.images)
    other = visualize_channels(tiny, "2", [3, 5], config=GradVisConfig(steps=20, image_size=32,
                                                                          seed=1))
    assert (pair.images - other.images).abs().max() > 0.05


def test_works_under_inference_mode(tiny):
    plain = visualize_channels(tiny, "0", [1], config=FAST)
    with torch.inference_mode():
        inside = visualize_channels(tiny, "0", [1], config=FAST)
    assert torch.equal(plain.images, inside.images)
    assert torch.all(inside.final_objective > inside.initial_objective)


def test_bad_layer_and_channels_raise(tiny):
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        visualize_channels(tiny, "nope", [0], config=FAST)
    for bad in ([8], [-1], [True], []):
        with pytest.raises(ValueError, match="channel"):
            visualize_channels(tiny, "0", bad, config=FAST)
    with pytest.raises(ValueError, match="0 to 7"):
        visualize_channels(tiny, "0", [0, 8], config=FAST)
    with pytest.raises(ValueError, match="site"):
        visualize_channels(tiny, "0", [0], site="middle", config=FAST)
    with pytest.raises(ValueError, match="GradVisConfig"):
        visualize_channels(tiny, "0", [0], config={"steps": 3})
