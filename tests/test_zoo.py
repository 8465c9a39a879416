"""The model zoo: the embedded default is real, every other source loads safely or says why not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from signseg_core.errors import CheckpointError, UnknownNameError, WeightsNotFoundError
from signseg_core.models.checkpoints import save_state_dict, state_fingerprint
from signseg_core.models.registry import TORCHVISION_ARCHS, list_models, load_model


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0")


def _sample_photos() -> dict[str, torch.Tensor]:
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    out = {}
    for name, img in zip(data.filenames, data.images):
        key = name.rsplit("/", 1)[-1]
        out[key] = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    return out


# -- the embedded default -------------------------------------------------------------------

def test_lite0_recognises_the_sample_photos(lite0):
    photos = _sample_photos()
    names = lite0.class_names
    with torch.no_grad():
        flower = lite0(photos["flower.jpg"])[0].topk(5).indices.tolist()
        china = lite0(photos["china.jpg"])[0].topk(5).indices.tolist()
    assert "daisy" in [names[i] for i in flower]
    buildings = {"palace", "monastery", "bell cote", "church", "castle", "stupa", "dome", "mosque"}
    assert buildings & {names[i] for i in china}


@pytest.mark.parametrize("variant, size", [(1, 240), (2, 260)])
def test_lite1_lite2_load_at_their_sizes_and_see_the_palace(variant, size):
    # (On flower.jpg Lite2 answers "honeycomb": only Lite0 is held to the daisy.)
    model = load_model(f"efficientnet_lite{variant}")
    assert model.input_size == size
    assert model.mean == (0.5, 0.5, 0.5) and model.std == (0.5, 0.5, 0.5)
    with torch.no_grad():
        top1 = model(_sample_photos()["china.jpg"])[0].argmax().item()
    assert model.class_names[top1] == "palace"


def test_inputs_are_scaled_to_minus_one_one(lite0):
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1).expand(1, 3, 224, 224)
    pre = lite0.preprocess(x)
    assert torch.allclose(pre[0, :, 0, 0], torch.tensor([-1.0, 0.0, 1.0]))


def test_any_size_and_features_readout_decomposition(lite0):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 150, 100, generator=g)
    with torch.no_grad():
        logits = lite0(images)
        feats = lite0.features(images)
    assert logits.shape == (2, 1000) and feats.shape == (2, lite0.n_features) == (2, 1280)
    w, b = lite0.readout.weight, lite0.readout.bias
    torch.testing.assert_close(feats @ w.T + b, logits, rtol=1e-5, atol=1e-4)
    # the same as the untouched full module on the preprocessed input
    with torch.no_grad():
        full = lite0.module(lite0.preprocess(images))
    torch.testing.assert_close(full, logits)


def test_trunk_shares_weights_and_the_model_is_not_mutated(lite0):
    assert isinstance(lite0.readout, nn.Linear)
    trunk_params = {p.data_ptr() for p in lite0.trunk.parameters()}
    assert {p.data_ptr() for p in lite0.module.parameters() if p is not lite0.readout.weight
            and p is not lite0.readout.bias} <= trunk_params
    before = lite0.readout.weight.clone()
    row, bias = lite0.readout_row(373)
    row.zero_()
    assert torch.equal(lite0.readout.weight, before)
    assert bias.shape == ()


def test_layers_are_in_forward_order(lite0):
    names = list(lite0.layers)
    assert names[0] == "_conv_stem" and names[-1] == "_fc" == lite0.readout_name
    assert all(isinstance(m, (nn.Conv2d, nn.Linear)) for m in lite0.layers.values())
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        lite0.layer("nope")


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.rand(1, 1, 32, 32), r"shape \(N, 3, H, W\)"),
        (torch.rand(3, 32, 32), r"shape \(N, 3, H, W\)"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
        (torch.rand(1, 3, 32, 32) * 255, r"in \[0, 1\]"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "floating point"),
        (torch.rand(0, 3, 32, 32), "non-empty"),
    ],
)
def test_bad_images_are_refused(lite0, bad, match):
    with pytest.raises(ValueError, match=match):
        lite0(bad)


def test_wrong_unit_index(lite0):
    with pytest.raises(ValueError, match="unit 1000 is out of range"):
        lite0.readout_row(1000)


# -- registry, listing, unknown names --------------------------------------------------------

def test_unknown_model_name_lists_choices():
    with pytest.raises(UnknownNameError, match="unknown model 'resnet51'.*resnet50"):
        load_model("resnet51")


def test_list_models_reports_weight_presence(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    rows = {r["name"]: r for r in list_models()}
    assert set(TORCHVISION_ARCHS) <= set(rows)
    assert rows["efficientnet_lite0"]["weights_present"] is True
    assert rows["resnet50"]["weights_present"] is False
    assert rows["resnet50_robust_linf_4"]["weights_present"] is False
    assert rows["resnet50"]["top1"] == pytest.approx(76.13, abs=0.01)


# -- torchvision weights from the hub cache --------------------------------------------------

def test_missing_torchvision_weights_say_which_file_and_where(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(WeightsNotFoundError) as err:
        load_model("resnet18")
    msg = str(err.value)
    assert "resnet18-f37072fd.pth" in msg and str(tmp_path / "th" / "hub" / "checkpoints") in msg
    assert msg.count(".") >= 1 and "\n" not in msg


def _put_in_hub(monkeypatch, tmp_path, arch: str, state: dict) -> None:
    from signseg_core.models.weights import torchvision_source

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    path = torchvision_source(arch).path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def test_torchvision_resnet18_loads_from_the_hub_cache(monkeypatch, tmp_path):
    torch.manual_seed(1)
    ref = torchvision.models.resnet18().eval()
    _put_in_hub(monkeypatch, tmp_path, "resnet18", ref.state_dict())
    model = load_model("resnet18")
    assert model.trained and model.input_size == 224 and model.top1 == pytest.approx(69.758)
    assert model.fingerprint == state_fingerprint(ref.state_dict())
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(model.preprocess(x)))


def test_densenet_legacy_keys_are_renamed(monkeypatch, tmp_path):
    import re

    torch.manual_seed(2)
    ref = torchvision.models.densenet121().eval()
    # torchvision's files predate num_batches_tracked and spell "norm1" as "norm.1"
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
              for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert any(".norm.1." in k for k in legacy)
    _put_in_hub(monkeypatch, tmp_path, "densenet121", legacy)
    model = load_model("densenet121")
    assert model.fingerprint == state_fingerprint(ref.state_dict())


def test_inception_v3_without_aux_head_in_layers():
    model = load_model("inception_v3", untrained=True)
    assert model.input_size == 299
    assert not any(name.startswith("AuxLogits") for name in model.layers)
    assert list(model.layers)[-1] == "fc"


# -- user checkpoints -------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["pth", "nested_pth", "safetensors"])
def test_user_checkpoint_round_trip(tmp_path, fmt):
    torch.manual_seed(3)
    state = torchvision.models.resnet18().state_dict()
    if fmt == "safetensors":
        path = tmp_path / "m.safetensors"
        save_state_dict(state, path)
    elif fmt == "pth":
        path = tmp_path / "m.pth"
        torch.save(state, path)
    else:
        path = tmp_path / "m.pth"
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    model = load_model("resnet18", weights=path)
    assert model.fingerprint == state_fingerprint(state)
    assert model.weights_source == str(path)


def test_wrong_architecture_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model("resnet18", weights=path)


def test_truncated_checkpoint(tmp_path):
    full = tmp_path / "full.pth"
    torch.save(torchvision.models.resnet18().state_dict(), full)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="(?i)truncated|corrupt"):
        load_model("resnet18", weights=cut)


def test_malicious_checkpoint_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (marker.write_text, ("ran",))

    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Evil()}, path)
    with pytest.raises(CheckpointError, match="(?i)refus|unsafe|code"):
        load_model("resnet18", weights=path)
    assert not marker.exists()


def test_tanh_variant_has_no_relu_and_loads_a_resnet18_state(tmp_path):
    torch.manual_seed(4)
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path / "tanh.pth"
    torch.save(state, path)
    model = load_model("resnet18_tanh", weights=path)
    mods = list(model.module.modules())
    assert not any(isinstance(m, nn.ReLU) for m in mods)
    assert sum(isinstance(m, nn.Tanh) for m in mods) >= 9
    assert model.fingerprint == state_fingerprint(state)
    x = torch.rand(1, 3, 64, 64)
    relu = load_model("resnet18", weights=path)
    with torch.no_grad():
        assert not torch.allclose(model(x), relu(x))


def test_tanh_variant_without_weights_says_where_to_put_them():
    with pytest.raises(WeightsNotFoundError, match="resnet18_tanh.pth"):
        load_model("resnet18_tanh")


def test_simsiam_backbone_plus_probe(tmp_path):
    torch.manual_seed(5)
    ref = torchvision.models.resnet50()
    backbone = {f"module.encoder.{k}": v for k, v in ref.state_dict().items()
                if not k.startswith("fc.")}
    backbone["module.encoder.fc.0.weight"] = torch.randn(2048, 2048)  # the projector
    backbone["module.predictor.0.weight"] = torch.randn(512, 2048)
    ckpt = tmp_path / "checkpoint_0099.pth.tar"
    torch.save({"state_dict": backbone, "epoch": 100, "arch": "resnet50"}, ckpt)
    probe = tmp_path / "probe.pth"
    head = {"module.fc.weight": ref.fc.weight, "module.fc.bias": ref.fc.bias}
    torch.save({"state_dict": head}, probe)
    with pytest.raises(CheckpointError, match="probe"):
        load_model("simsiam_resnet50", weights=ckpt)
    model = load_model("simsiam_resnet50", weights=ckpt, probe=probe)
    assert model.fingerprint == state_fingerprint(ref.state_dict())


@pytest.mark.slow
def test_robust_resnet50_from_a_madry_checkpoint(tmp_path, monkeypatch):
    import argparse

    from signseg_core import paths

    torch.manual_seed(6)
    ref = torchvision.models.resnet50().eval()
    sd = ref.state_dict()
    model_sd = {f"module.model.{k}": v for k, v in sd.items()}
    model_sd.update({f"module.attacker.model.{k}": torch.zeros_like(v) for k, v in sd.items()})
    model_sd["module.normalizer.new_mean"] = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    model_sd["module.normalizer.new_std"] = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    path = paths.weights_dir() / "robust" / "resnet50_linf_eps4.0.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"model": model_sd, "epoch": 90, "args": argparse.Namespace(eps=4.0)}, path)
    model = load_model("resnet50_robust_linf_4")
    assert model.fingerprint == state_fingerprint(sd)
    assert model.mean == pytest.approx((0.485, 0.456, 0.406))
    converted = list((paths.weights_dir() / "converted").glob("*.safetensors"))
    assert len(converted) == 1
    again = load_model("resnet50_robust_linf_4")  # from the converted file
    assert again.fingerprint == model.fingerprint


# -- untrained variants -----------------------------------------------------------------------

def test_untrained_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = load_model("resnet18", untrained=True, seed=0)
    b = load_model("resnet18", untrained=True, seed=0)
    c = load_model("resnet18", untrained=True, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert not a.trained and a.top1 is None and "seed 0" in a.weights_source


def test_tiny_test_model_is_fast_and_complete():
    model = load_model("tiny_test")
    with torch.no_grad():
        out = model(torch.rand(4, 3, 64, 64))
    assert out.shape == (4, 1000) and model.n_features == 16
    assert list(model.layers) == ["0", "2", "6"]


def test_the_package_exposes_the_main_entry_points():
    import signseg_core

    model = signseg_core.load_model("tiny_test")
    w = model.readout.weight
    assert signseg_core.dale_index(w).shape == (16,)
    assert torch.equal(signseg_core.ablate_weights(w[0], "positive", 0.0), w[0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusals of a CPU machine")
@pytest.mark.parametrize("device, phrase", [
    ("cuda", "has no CUDA device"), ("cuda:3", "has no CUDA device"),
    ("mps", "has no Apple GPU"), ("gpu0", "unknown device 'gpu0'"),
    ("meta", "cannot run signseg")])
def test_a_device_this_machine_lacks_is_one_sentence(device, phrase):
    from signseg_core.models.zoo import resolve_device
    with pytest.raises(ValueError, match=phrase):
        resolve_device(device)
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
