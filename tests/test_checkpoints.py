"""Tests of signseg_core.models.checkpoints: safe loading, fitting, fingerprinting, Madry
conversion."""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import nn

from signseg_core.errors import CheckpointError, UnsafeCheckpointError, WeightsNotFoundError
from signseg_core.models.checkpoints import (
    MADRY_FORMAT,
    convert_madry_checkpoint,
    load_into,
    load_madry_robust,
    load_state_dict_file,
    save_state_dict,
    select_prefix,
    sha256_file,
    state_fingerprint,
    strip_prefix,
)


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=gen),
        "conv.bias": torch.randn(4, generator=gen).half(),
        "bn.num_batches_tracked": torch.tensor(7),
        "mask": torch.rand(5, generator=gen) > 0.5,
        "fc.weight": torch.randn(2, 4, generator=gen, dtype=torch.float64),
    }


def _assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


class _OpenPayload:
    """Unpickling this calls ``open(marker, "w")`` (pickled as ``io.open``): the marker appears."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _SystemPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize(
    "name, wrap",
    [
        ("plain.pth", lambda s: s),
        ("nested.pth", lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}, "ep": 3}),
        ("lightning.ckpt", lambda s: {"model": {"model_state_dict": s}, "lr": 0.1}),
        ("hf.bin", lambda s: {"model_state_dict": s, "step": torch.tensor(2)}),
        ("plain.safetensors", None),
    ],
)
def test_round_trip(tmp_path, name, wrap):
    state = _random_state()
    path = tmp_path / name
    if wrap is None:
        save_state_dict(state, path)
    else:
        torch.save(wrap(state), path)
    _assert_same(load_state_dict_file(path), state)


def test_data_parallel_prefix_kept_on_request(tmp_path):
    state = _random_state()
    path = save_state_dict({f"module.{k}": v for k, v in state.items()}, tmp_path / "dp.pt")
    kept = load_state_dict_file(path, strip_data_parallel=False)
    assert sorted(kept) == sorted(f"module.{k}" for k in state)
    _assert_same(strip_prefix(kept, "module."), state)


def test_legacy_torch_format_loads(tmp_path):
    state = _random_state(1)
    torch.save({"state_dict": state}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    _assert_same(load_state_dict_file(tmp_path / "old.pth"), state)


def test_save_is_atomic_and_stores_views_compactly(tmp_path):
    big = torch.arange(1_000_000, dtype=torch.float32)
    for name in ("v.pth", "v.safetensors"):
        path = save_state_dict({"a": big[10:12], "b": big[10:12]}, tmp_path / name)
        assert path.stat().st_size < 10_000  # not the 4 MB storage behind the view
        loaded = load_state_dict_file(path)
        assert loaded["a"].tolist() == [10.0, 11.0] and loaded["b"].tolist() == [10.0, 11.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.pth", "v.safetensors"]  # no temps


def test_save_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="metadata"):
        save_state_dict({"a": torch.ones(1)}, tmp_path / "a.pth", metadata={"k": "v"})
    with pytest.raises(ValueError, match=r"\.npz"):
        save_state_dict({"a": torch.ones(1)}, tmp_path / "a.npz")
    with pytest.raises(TypeError, match="'a'"):
        save_state_dict({"a": [1.0]}, tmp_path / "a.pth")
    with pytest.raises(ValueError, match="empty"):
        save_state_dict({}, tmp_path / "a.safetensors")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ broken files


@pytest.mark.parametrize("name", ["half.pth", "half.safetensors", "half_legacy.pt"])
def test_truncated_file_is_reported_with_size(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".safetensors"):
        save_state_dict(_random_state(), path)
    else:
        torch.save(_random_state(), path, _use_new_zipfile_serialization="legacy" not in name)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_state_dict_file(path)
    assert f"{len(data) // 2:,} bytes" in str(info.value)
    assert not isinstance(info.value, UnsafeCheckpointError)


@pytest.mark.parametrize("name", ["empty.pth", "empty.safetensors"])
def test_zero_byte_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty \(0 bytes\).*truncated or corrupt"):
        load_state_dict_file(tmp_path / name)


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nowhere" / "resnet50_linf_eps4.0.ckpt"
    with pytest.raises(WeightsNotFoundError) as info:
        load_state_dict_file(path, what="the robust ResNet-50", hint="see docs/weights.md")
    assert str(path) in str(info.value) and "see docs/weights.md" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize(
    "obj, match",
    [
        ([torch.ones(2)], "holds no state dict.*a list"),
        ({"epoch": 3, "state_dict": {"lr": 0.1}}, "holds no state dict.*keys epoch, state_dict"),
        ({}, "empty mapping"),
    ],
)
def test_file_without_tensors(tmp_path, obj, match):
    torch.save(obj, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=match):
        load_state_dict_file(tmp_path / "x.pth")


def test_empty_safetensors_and_unknown_suffix(tmp_path):
    save_file({}, tmp_path / "none.safetensors")
    with pytest.raises(CheckpointError, match="no tensors"):
        load_state_dict_file(tmp_path / "none.safetensors")
    (tmp_path / "w.npz").write_bytes(b"123")
    with pytest.raises(CheckpointError, match=r"'\.npz'.*\.safetensors"):
        load_state_dict_file(tmp_path / "w.npz")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("name", ["w.pth", "w.safetensors"])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, name, bad):
    state = _random_state()
    state["fc.weight"][1, 2] = bad
    save_state_dict(state, tmp_path / name)
    with pytest.raises(CheckpointError, match=r"NaN or infinite weights in fc\.weight,") as info:
        load_state_dict_file(tmp_path / name)
    assert "conv.weight" not in str(info.value) and "\n" not in str(info.value)


def test_a_madry_checkpoint_of_nans_is_refused(tmp_path):
    net = _tiny(3)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    _madry_file(tmp_path / "r.ckpt", net)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_madry_robust(tmp_path / "r.ckpt", cache_dir=tmp_path / "cache")


# ------------------------------------------------------------------------------ malicious pickles


def test_payload_is_real_when_unpickled_unsafely(tmp_path):
    """Control: the payloads below do create their marker when loaded with plain pickle."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_OpenPayload(marker))).close()
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("payload", [_OpenPayload, _SystemPayload])
@pytest.mark.parametrize("writer", ["torch.save", "torch.save legacy", "pickle p2", "pickle p5"])
def test_malicious_pickle_refused_and_not_run(tmp_path, payload, writer):
    marker = tmp_path / "pwned"
    obj = {"evil": payload(marker), "conv.weight": torch.ones(2)}
    path = tmp_path / "weights.pth"
    if writer.startswith("torch.save"):
        torch.save(obj, path, _use_new_zipfile_serialization="legacy" not in writer)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=int(writer[-1])))
    with pytest.raises(UnsafeCheckpointError, match="Refused to load.*no code from it was") as e:
        load_state_dict_file(path)
    assert not marker.exists()
    if writer != "pickle p5":  # torch refuses a raw protocol-5 pickle before any global
        assert ("io.open" if payload is _OpenPayload else "system") in str(e.value)


# ------------------------------------------------------------------------------ prefixes


def test_strip_and_select_prefix_exact():
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)
    state = {"module.model.x": a, "module.attacker.model.x": b, "head": c}
    before = dict(state)
    assert strip_prefix(state, "module.") == {"model.x": a, "attacker.model.x": b, "head": c}
    assert select_prefix(state, "module.model.") == {"x": a}
    assert select_prefix(state, "nothing.") == {}
    assert state == before  # inputs untouched
    with pytest.raises(CheckpointError, match="'x'"):
        strip_prefix({"module.x": a, "x": b}, "module.")


# ------------------------------------------------------------------------------ load_into


def _tiny(hidden: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, hidden), nn.BatchNorm1d(hidden), nn.Linear(hidden, 1))


def test_load_into_copies_exactly():
    src, dst = _tiny(3), _tiny(3)
    with torch.no_grad():
        src[0].weight.add_(1.0)
    load_into(dst, src.state_dict(), what="tiny")
    assert state_fingerprint(dst) == state_fingerprint(src)


def test_shape_mismatch_is_listed_and_nothing_loaded():
    model = _tiny(3)
    before = state_fingerprint(model)
    with pytest.raises(CheckpointError) as info:
        load_into(model, _tiny(4).state_dict(), what="tiny", strict=False)
    msg = str(info.value)
    assert msg.startswith("The checkpoint for tiny does not fit the architecture: 7 shape mismat")
    assert "0.weight: checkpoint (4, 2) vs model (3, 2)" in msg
    assert "2.weight: checkpoint (1, 4) vs model (1, 3)" not in msg  # only the first five
    assert "and 2 more" in msg and "missing" not in msg
    assert state_fingerprint(model) == before


def test_resnet18_into_resnet34_lists_missing_keys():
    from torchvision.models import resnet18, resnet34

    with torch.device("meta"):  # shapes only: the mismatch is found before any copy
        small, big = resnet18(), resnet34()
    with pytest.raises(CheckpointError) as info:
        load_into(big, small.state_dict(), what="ResNet-34")
    msg = str(info.value)
    assert "missing keys (layer1.2.conv1.weight, layer1.2.bn1.weight," in msg
    assert "unexpected" not in msg and "shape" not in msg and msg.count(".") > 5


def test_unexpected_keys_strict_and_lenient():
    model, state = _tiny(3), dict(_tiny(3).state_dict())
    state["head.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"1 unexpected key \(head\.weight\)"):
        load_into(model, state, what="tiny")
    assert load_into(model, state, what="tiny", strict=False) == ("head.weight",)
    assert "head.weight" in state  # input not modified


def test_missing_key_raises_even_when_lenient_but_counter_is_tolerated():
    model, state = _tiny(3), dict(_tiny(3).state_dict())
    del state["1.num_batches_tracked"]
    assert load_into(model, state, what="tiny") == ()
    del state["2.bias"]
    with pytest.raises(CheckpointError, match=r"1 missing key \(2\.bias\)"):
        load_into(model, state, what="tiny", strict=False)


def test_data_parallel_state_rejected_until_stripped():
    state = {f"module.{k}": v for k, v in _tiny(3).state_dict().items()}
    expected = r"8 missing keys \(0\.weight.*9 unexpected keys \(module\.0\.bias"
    with pytest.raises(CheckpointError, match=expected):
        load_into(_tiny(3), state, what="tiny")
    assert load_into(_tiny(3), strip_prefix(state, "module."), what="tiny") == ()


# ------------------------------------------------------------------------------ fingerprints


def test_sha256_file_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 41
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk_bytes=100) == hashlib.sha256(data).hexdigest()


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
    index=st.integers(0, 10**6),
)
def test_fingerprint_properties(shape, seed, index):
    gen = torch.Generator().manual_seed(seed)
    state = {"b": torch.randn(*shape, generator=gen), "a": torch.randn(3, generator=gen)}
    reordered = {"a": state["a"].clone(), "b": state["b"].clone()}
    base = state_fingerprint(state)
    assert len(base) >= 16 and base == state_fingerprint(reordered)
    changed = {"a": state["a"], "b": state["b"].clone()}
    flat = changed["b"].view(-1)
    flat[index % flat.numel()] += 1.0
    assert state_fingerprint(changed) != base
    assert state_fingerprint({"a": state["a"], "b": state["b"].double()}) != base
    if len(shape) > 1:  # same bytes, other shape
        assert state_fingerprint({"a": state["a"], "b": state["b"].reshape(-1)}) != base
    assert state_fingerprint({"A": state["a"], "b": state["b"]}) != base


def test_fingerprint_of_views_modules_and_grads():
    gen = torch.Generator().manual_seed(3)
    wide = torch.randn(4, 6, generator=gen)
    view = wide.t()[::2]  # non-contiguous
    assert not view.is_contiguous()
    assert state_fingerprint({"w": view}) == state_fingerprint({"w": view.contiguous()})
    model = _tiny(3)
    assert state_fingerprint(model) == state_fingerprint(dict(model.state_dict()))
    assert state_fingerprint({"z": torch.zeros(0)}) != state_fingerprint({"z": torch.zeros(0, 1)})
    with pytest.raises(TypeError, match="'n'"):
        state_fingerprint({"n": 3})


# ------------------------------------------------------------------------------ Madry checkpoints


def _madry_file(path, net: nn.Module, *, extra=None, legacy=False):
    """A file laid out like MadryLab robustness checkpoints (Salman et al. 2020)."""
    weights = net.state_dict()
    state = {f"module.model.{k}": v for k, v in weights.items()}
    state |= {f"module.attacker.model.{k}": torch.full_like(v, 9) for k, v in weights.items()}
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    for owner in ("module.", "module.attacker."):
        state[f"{owner}normalizer.new_mean"] = mean.view(3, 1, 1)
        state[f"{owner}normalizer.new_std"] = std.view(3, 1, 1)
    ckpt = {
        "model": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0]}]},
        "schedule": {"step_size": 30, "gamma": 0.1, "last_epoch": 89},
        "epoch": 90,
        "args": argparse.Namespace(arch="resnet50", eps=4.0, constraint="inf"),
    }
    ckpt |= extra or {}
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return dict(weights), mean, std


@pytest.mark.parametrize("legacy", [False, True])
def test_madry_round_trip_ignores_attacker(tmp_path, legacy):
    src = tmp_path / "resnet50_linf_eps4.0.ckpt"
    weights, mean, std = _madry_file(src, _tiny(3), legacy=legacy)
    allowed_before = set(torch.serialization.get_safe_globals())
    meta = convert_madry_checkpoint(src, tmp_path / "out.safetensors")
    assert set(torch.serialization.get_safe_globals()) == allowed_before  # scoped allow-list
    assert meta["format"] == MADRY_FORMAT and meta["epoch"] == "90"
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    _assert_same(load_state_dict_file(tmp_path / "out.safetensors"), weights)

    state, got_mean, got_std = load_madry_robust(src, cache_dir=tmp_path / "cache")
    _assert_same(state, weights)  # the attacker copy (all 9s) was dropped
    assert got_mean == tuple(mean.tolist()) and got_std == tuple(std.tolist())
    expected_name = f"{meta['source_sha256'][:16]}.safetensors"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [expected_name]


def test_madry_cache_reused_then_rebuilt_when_corrupt(tmp_path, monkeypatch):
    import signseg_core.models.checkpoints as ckpts

    src = tmp_path / "robust.ckpt"
    weights, _, _ = _madry_file(src, _tiny(3))
    load_madry_robust(src, cache_dir=tmp_path / "cache")
    (cached,) = (tmp_path / "cache").iterdir()
    calls = []
    real = ckpts.convert_madry_checkpoint
    monkeypatch.setattr(ckpts, "convert_madry_checkpoint",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    _assert_same(load_madry_robust(src, cache_dir=tmp_path / "cache")[0], weights)
    assert calls == []
    cached.write_bytes(cached.read_bytes()[:100])
    _assert_same(load_madry_robust(src, cache_dir=tmp_path / "cache")[0], weights)
    assert calls == [1]


def test_madry_default_cache_dir_is_under_weights_dir(tmp_path):
    src = tmp_path / "robust.ckpt"
    _madry_file(src, _tiny(2))
    load_madry_robust(src)
    assert len(list((tmp_path / "cache" / "weights" / "converted").glob("*.safetensors"))) == 1


def test_madry_file_needs_its_allow_list(tmp_path):
    src = tmp_path / "robust.ckpt"
    _madry_file(src, _tiny(2))
    with pytest.raises(UnsafeCheckpointError, match="argparse.Namespace"):
        load_state_dict_file(src)


@pytest.mark.parametrize("where", ["top", "inside_namespace"])
def test_madry_malicious_object_refused(tmp_path, where):
    marker = tmp_path / "pwned"
    evil = _OpenPayload(marker)
    extra = {"amp": evil} if where == "top" else {"args": argparse.Namespace(arch=evil)}
    _madry_file(tmp_path / "evil.ckpt", _tiny(2), extra=extra)
    with pytest.raises(UnsafeCheckpointError, match="io.open"):
        load_madry_robust(tmp_path / "evil.ckpt", cache_dir=tmp_path / "cache")
    assert not marker.exists()
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_madry_wrong_layout(tmp_path):
    torch.save({"model": {"conv.weight": torch.ones(1)}, "epoch": 1}, tmp_path / "x.ckpt")
    with pytest.raises(CheckpointError, match="not a robustness checkpoint.*conv.weight"):
        convert_madry_checkpoint(tmp_path / "x.ckpt", tmp_path / "x.safetensors")
    with pytest.raises(WeightsNotFoundError, match="absent.ckpt"):
        load_madry_robust(tmp_path / "absent.ckpt", cache_dir=tmp_path)


def test_madry_resnet18_fits_torchvision(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(1)
    net = resnet18()
    _madry_file(tmp_path / "r18.ckpt", net)
    state, _, _ = load_madry_robust(tmp_path / "r18.ckpt", cache_dir=tmp_path / "cache")
    fresh = resnet18()
    load_into(fresh, state, what="robust ResNet-18")
    assert state_fingerprint(fresh) == state_fingerprint(net)
