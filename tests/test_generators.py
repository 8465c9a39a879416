"""Generators: shapes, ranges, batch independence, seeding, weights handling, registry."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from signseg_core import paths
from signseg_core.errors import (
    CheckpointError,
    UnknownNameError,
    UnsafeCheckpointError,
    WeightsNotFoundError,
)
from signseg_core.generators import biggan, deepsim
from signseg_core.generators import catalog as G
from signseg_core.models.checkpoints import load_into

LUCID_COLUMN0 = torch.tensor([0.26, 0.27, 0.27])  # first column of color_correlation_svd_sqrt


@pytest.fixture
def no_weight_caches(tmp_path, monkeypatch):
    """Point every weights cache at empty folders."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(tmp_path / "biggan"))


def tiny_biggan_config():
    BigGANConfig = pytest.importorskip("pytorch_pretrained_biggan").BigGANConfig

    return BigGANConfig(output_dim=32, z_dim=128, class_embed_dim=128, channel_width=4,
                        num_classes=10, attention_layer_position=2,
                        layers=[(False, 16, 8), (True, 8, 4), (True, 4, 2), (True, 2, 1)])


def tiny_biggan(seed=0):
    """A 32-px BigGAN-deep with random weights and random truncation statistics."""
    model = biggan.build_biggan(tiny_biggan_config(), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.generator.bn.weight.fill_(0.05)  # keep tanh out of saturation
        for name, buf in model.named_buffers():
            if name.endswith("running_means"):
                buf.normal_(0.0, 0.1, generator=gen)
    return model


@pytest.fixture(scope="module")
def deepsim_gen():
    return G.make_generator("deepsim", untrained=True, seed=0)


@pytest.fixture(scope="module")
def biggan_gen():
    return G.BigGANGenerator(tiny_biggan(), fingerprint="tiny")


@pytest.fixture(params=["fourier", "pixel", "deepsim", "biggan"])
def any_gen(request):
    return {"fourier": lambda: G.FourierGenerator(size=64, max_freq=6),
            "pixel": lambda: G.PixelPyramidGenerator(size=64, grids=(4, 8, 16)),
            "deepsim": lambda: request.getfixturevalue("deepsim_gen"),
            "biggan": lambda: request.getfixturevalue("biggan_gen")}[request.param]()


def sample_codes(gen, batch, seed=0):
    noise = torch.randn(batch, gen.dim, generator=torch.Generator().manual_seed(seed + 1))
    return gen.initial_code(1, seed=seed) + gen.sigma0 * noise


# ------------------------------------------------------------------ common behaviour

@pytest.mark.parametrize("batch", [1, 3])
def test_shape_and_range(any_gen, batch):
    images = any_gen.generate(sample_codes(any_gen, batch))
    assert images.shape == (batch, 3, any_gen.image_size, any_gen.image_size)
    assert images.dtype == torch.float32 and torch.isfinite(images).all()
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.std() > 0.01  # not a flat grey


def test_batch_size_independence(any_gen):
    codes = sample_codes(any_gen, 3)
    together = any_gen.generate(codes)
    for i in range(3):
        torch.testing.assert_close(any_gen.generate(codes[i:i + 1])[0], together[i],
                                   atol=1e-5, rtol=1e-4)


def test_split_generate_equals_unsplit(any_gen):
    codes = sample_codes(any_gen, 3)
    torch.testing.assert_close(any_gen.generate(codes, batch_size=2),
                               any_gen.generate(codes, batch_size=3), atol=1e-5, rtol=1e-4)


def test_initial_code_seeded(any_gen):
    a, b = any_gen.initial_code(2, seed=7), any_gen.initial_code(2, seed=7)
    assert a.shape == (2, any_gen.dim) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, any_gen.initial_code(2, seed=8))
    assert not torch.equal(a[0], a[1])


def test_generators_stay_in_eval_and_frozen(any_gen):
    any_gen.train()
    assert not any(m.training for m in any_gen.modules())
    assert not any(p.requires_grad for p in any_gen.parameters())


def test_bad_inputs_are_refused(any_gen):
    with pytest.raises(ValueError, match=f"\\(B, {any_gen.dim}\\)"):
        any_gen(torch.zeros(2, any_gen.dim + 1))
    with pytest.raises(ValueError, match="batch_size"):
        any_gen.generate(torch.zeros(1, any_gen.dim), batch_size=0)
    with pytest.raises(ValueError, match="batch"):
        any_gen.initial_code(0, seed=0)


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 7), chunk=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_fourier_any_chunking_is_the_same(batch, chunk, seed):
    gen = G.FourierGenerator(size=40, max_freq=4)
    codes = np.random.default_rng(seed).normal(size=(batch, gen.dim))  # float64 ndarray is fine
    torch.testing.assert_close(gen.generate(codes, batch_size=chunk), gen.generate(codes),
                               atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------ weight-free generators

def test_fourier_dimension_counts_the_frequency_disc():
    # Lattice points with fx**2 + fy**2 <= 2**2: 13 per channel.
    assert G.FourierGenerator(size=32, max_freq=2).dim == 3 * 13
    assert G.FourierGenerator().dim == 1323


def test_fourier_dc_is_a_flat_image_coloured_by_the_first_lucid_column():
    gen = G.FourierGenerator(size=32, max_freq=3)
    code = torch.zeros(1, gen.dim)
    code[0, 0] = 0.5  # DC of the first decorrelated channel
    logits = torch.logit(gen(code)[0].double())
    assert torch.allclose(logits, logits[:, :1, :1].expand_as(logits), atol=1e-5)
    torch.testing.assert_close(logits[:, 0, 0] / logits[0, 0, 0],
                               (LUCID_COLUMN0 / 0.26).double(), atol=1e-4, rtol=1e-4)


def test_fourier_images_are_band_limited_to_max_freq():
    gen = G.FourierGenerator(size=32, max_freq=3)  # canvas = size: no upsampling
    logits = torch.logit(gen(sample_codes(gen, 2)).double())
    power = torch.fft.fft2(logits).abs() ** 2
    f = torch.fft.fftfreq(32, 1 / 32)
    outside = (f[:, None] ** 2 + f[None, :] ** 2) > 9
    assert power[..., outside].max() < 1e-8 * power.max()
    assert power[..., ~outside].max() > 1.0


def test_fourier_spectrum_is_isotropic():
    # Mean power over many N(0, 1) codes: the same along x and along y, ~ 1/|f|**(2 * decay).
    gen = G.FourierGenerator(size=32, max_freq=4, decay=1.0)
    codes = torch.randn(400, gen.dim, generator=torch.Generator().manual_seed(0))
    logits = torch.logit(gen(codes).double())
    power = (torch.fft.fft2(logits - logits.mean((2, 3), keepdim=True)).abs() ** 2).mean((0, 1))
    band = power[:5, :5]
    torch.testing.assert_close(band, band.T, rtol=0.25, atol=1e-6 * band.max().item())
    assert 3.0 < band[0, 1] / band[0, 2] < 5.5  # (2 / 1) ** 2 = 4, through the sigmoid


def test_pixel_coarsest_grid_constant_gives_a_flat_image():
    gen = G.PixelPyramidGenerator(size=32, grids=(4, 8))
    assert gen.dim == 3 * (16 + 64)
    code = torch.zeros(1, gen.dim)
    code[0, :16] = 0.3  # channel 0 of the 4x4 grid
    logits = torch.logit(gen(code)[0].double())
    assert torch.allclose(logits, logits[:, :1, :1].expand_as(logits), atol=1e-5)
    torch.testing.assert_close(logits[:, 0, 0] / logits[0, 0, 0],
                               (LUCID_COLUMN0 / 0.26).double(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["fourier", "pixel"])
def test_sigma0_gives_varied_unsaturated_images(name):
    gen = G.make_generator(name)
    images = gen.generate(sample_codes(gen, 32))
    assert 0.15 <= images.std(dim=(1, 2, 3)).mean() <= 0.25
    assert ((images < 0.02) | (images > 0.98)).float().mean() < 0.01
    assert (images[0] - images[1]).abs().mean() > 0.1  # samples differ from each other


@pytest.mark.parametrize("name", ["fourier", "pixel"])
def test_weight_free_forward_is_differentiable(name):
    gen = G.make_generator(name, size=48)
    codes = sample_codes(gen, 2).requires_grad_(True)
    target = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))

    def loss(c):
        return ((gen(c) - target) ** 2).sum()

    loss(codes).backward()
    assert torch.isfinite(codes.grad).all() and codes.grad.abs().sum() > 0
    direction = torch.randn(codes.shape, generator=torch.Generator().manual_seed(1))
    eps = 1e-2
    with torch.no_grad():
        numeric = (loss(codes + eps * direction) - loss(codes - eps * direction)) / (2 * eps)
    assert math.isclose(numeric, (codes.grad * direction).sum(), rel_tol=0.02)


def test_fingerprints_follow_the_parameterisation():
    assert G.FourierGenerator().fingerprint == G.FourierGenerator().fingerprint
    assert G.FourierGenerator().fingerprint != G.FourierGenerator(decay=1.0).fingerprint
    assert G.PixelPyramidGenerator().fingerprint != G.PixelPyramidGenerator(size=128).fingerprint


# ------------------------------------------------------------------ DeePSiM

PUBLIC_DEEPSIM_SHAPES = {  # upconvGAN "fc6" (Binxu Wang), ConvTranspose2d weights (in, out, k, k)
    "defc7.weight": (4096, 4096), "defc6.weight": (4096, 4096), "defc5.weight": (4096, 4096),
    "deconv5.weight": (256, 256, 4, 4), "conv5_1.weight": (256, 512, 3, 3),
    "deconv4.weight": (512, 256, 4, 4), "conv4_1.weight": (256, 256, 3, 3),
    "deconv3.weight": (256, 128, 4, 4), "conv3_1.weight": (128, 128, 3, 3),
    "deconv2.weight": (128, 64, 4, 4), "deconv1.weight": (64, 32, 4, 4),
    "deconv0.weight": (32, 3, 4, 4),
}


def test_deepsim_keys_and_shapes_match_the_public_port(deepsim_gen):
    state = deepsim_gen.net.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items() if k.endswith("weight")} == \
        PUBLIC_DEEPSIM_SHAPES
    assert {k[:-5] for k in state if k.endswith(".bias")} == \
        {k[:-7] for k in PUBLIC_DEEPSIM_SHAPES}
    assert deepsim_gen.image_size == 256 and deepsim_gen.sigma0 == 3.0


class ConstantRaw(nn.Module):
    """Stands in for the DeePSiM net: raw BGR output (b, g, r) everywhere."""

    def __init__(self, bgr):
        super().__init__()
        self.register_buffer("bgr", torch.tensor(bgr, dtype=torch.float32))

    def forward(self, codes):
        return self.bgr.view(1, 3, 1, 1).expand(len(codes), 3, 256, 256).clone()


@pytest.mark.parametrize("bgr, rgb255", [
    ((10.0, 20.0, 30.0), (30 + 123, 20 + 117, 10 + 104)),  # flip, then the RGB-ordered mean
    ((-300.0, 0.0, 300.0), (255, 117, 0)),                  # clamped to [0, 255]
])
def test_deepsim_flips_bgr_and_adds_the_rgb_mean(bgr, rgb255):
    gen = G.DeePSiMGenerator(ConstantRaw(bgr), fingerprint="constant")
    image = gen(torch.zeros(2, 4096))
    expected = torch.tensor(rgb255, dtype=torch.float32).view(1, 3, 1, 1) / 255
    torch.testing.assert_close(image, expected.expand(2, 3, 256, 256))


@pytest.fixture(scope="module")
def saved_deepsim(deepsim_gen, tmp_path_factory):
    """The untrained net saved under the public wrapper's key names (``G.defc7.weight``...)."""
    path = tmp_path_factory.mktemp("deepsim") / "random_fc6.pt"
    torch.save({f"G.{k}": v for k, v in deepsim_gen.net.state_dict().items()}, path)
    return path


def test_deepsim_loads_a_public_style_file_strictly_and_warns_on_its_hash(saved_deepsim,
                                                                          deepsim_gen):
    rng = torch.get_rng_state()
    with pytest.warns(UserWarning, match="SHA-256"):
        gen = G.make_generator("deepsim", weights=saved_deepsim)
    assert torch.equal(rng, torch.get_rng_state())  # no hidden global-RNG draws
    digest = hashlib.sha256(saved_deepsim.read_bytes()).hexdigest()
    assert gen.fingerprint == f"deepsim:sha256={digest}"
    codes = sample_codes(gen, 2)
    torch.testing.assert_close(gen.generate(codes), deepsim_gen.generate(codes))


def test_deepsim_missing_or_misshapen_keys_are_errors(deepsim_gen):
    state = dict(deepsim_gen.net.state_dict())
    del state["conv4_1.bias"]
    with pytest.raises(CheckpointError, match="conv4_1.bias"):
        load_into(deepsim.empty_net(), state, what="DeePSiM fc6")
    state["conv4_1.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="conv4_1.bias"):
        load_into(deepsim.empty_net(), state, what="DeePSiM fc6")


def test_deepsim_key_spellings_are_normalised():
    t = torch.zeros(1)
    assert set(deepsim.normalise_keys({"G.defc7.weight": t, "module.conv5_1.bias": t,
                                       "deconv0.1.weight": t})) == \
        {"defc7.weight", "conv5_1.bias", "deconv0.weight"}


def test_deepsim_truncated_or_foreign_file_is_a_checkpoint_error(tmp_path):
    small = tmp_path / "small.pt"
    torch.save({"defc7.weight": torch.zeros(8, 8)}, small)
    with pytest.raises(CheckpointError, match="missing keys"):
        deepsim.load_deepsim(small)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(small.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated"):
        deepsim.load_deepsim(truncated)


def test_hash_verifier_on_small_files(tmp_path, monkeypatch):
    good = tmp_path / "weights.pt"
    good.write_bytes(b"signseg" * 100)
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    assert deepsim.verify_weights_file(good, expected_size=700, expected_sha256=digest) == digest
    monkeypatch.setattr(deepsim, "DEEPSIM_SIZE", 700)
    monkeypatch.setattr(deepsim, "DEEPSIM_SHA256", digest)
    assert deepsim.verify_weights_file(good) == digest
    tampered = tmp_path / "tampered.pt"
    tampered.write_bytes(b"signseG" * 100)  # same size, other bytes
    with pytest.raises(CheckpointError, match="SHA-256"):
        deepsim.verify_weights_file(tampered)
    short = tmp_path / "short.pt"
    short.write_bytes(b"signseg" * 99)
    with pytest.raises(CheckpointError, match="693 bytes, expected 700"):
        deepsim.verify_weights_file(short)


@pytest.mark.parametrize("right_hash", [True, False])
def test_download_moves_only_a_verified_file_into_place(tmp_path, monkeypatch, right_hash):
    source = tmp_path / "published.pt"
    source.write_bytes(b"fc6" * 1000)
    monkeypatch.setattr(deepsim, "DEEPSIM_SIZE", 3000)
    monkeypatch.setattr(deepsim, "DEEPSIM_SHA256", hashlib.sha256(
        source.read_bytes() if right_hash else b"something else").hexdigest())
    if right_hash:
        target = deepsim.download_deepsim(url=source.as_uri())
        assert target == paths.weights_dir() / deepsim.DEEPSIM_FILENAME
        assert target.read_bytes() == source.read_bytes()
    else:
        with pytest.raises(CheckpointError, match="SHA-256"):
            deepsim.download_deepsim(url=source.as_uri())
        assert list(paths.weights_dir().iterdir()) == []  # no half file, no .part left


def test_deepsim_weights_are_found_in_the_hugging_face_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    assert deepsim.find_deepsim_weights() is None
    snapshot = (tmp_path / "hf_home" / "hub" / "models--binxu--DeePSim_DosovitskiyBrox2016"
                / "snapshots" / "abc123")
    snapshot.mkdir(parents=True)
    (snapshot / deepsim.DEEPSIM_FILENAME).write_bytes(b"x")
    assert deepsim.find_deepsim_weights() == snapshot / deepsim.DEEPSIM_FILENAME
    local = paths.weights_dir() / deepsim.DEEPSIM_FILENAME
    local.write_bytes(b"y")
    assert deepsim.find_deepsim_weights() == local  # weights_dir() comes first


@pytest.mark.usefixtures("no_weight_caches")
@pytest.mark.parametrize("name, filename", [("deepsim", "upconvGAN_fc6.pt"),
                                            ("biggan", "pytorch_model.bin")])
def test_missing_weights_offline_name_the_file(name, filename):
    assert paths.offline()
    with pytest.raises(WeightsNotFoundError, match=filename) as info:
        G.make_generator(name)
    assert str(paths.weights_dir()) in str(info.value) and "https://" in str(info.value)


# ------------------------------------------------------------------ BigGAN

def test_biggan_code_is_noise_then_class_embedding(biggan_gen):
    model = biggan_gen.model
    noise = biggan_gen.initial_code(2, seed=3)[:, :128]
    one_hot = nn.functional.one_hot(torch.tensor([4, 7]), 10).float()
    codes = torch.cat([noise, torch.stack([biggan_gen.class_code(4), biggan_gen.class_code(7)])], 1)
    with torch.no_grad():
        expected = (model(noise, one_hot, 0.7) + 1) / 2  # the package's own class-label path
    torch.testing.assert_close(biggan_gen(codes), expected)
    assert biggan_gen.dim == 256 and biggan_gen.image_size == 32 and biggan_gen.sigma0 == 0.2


def test_biggan_truncation_reaches_the_generator(monkeypatch):
    gen = G.BigGANGenerator(tiny_biggan(), truncation=0.4, fingerprint="tiny")
    seen = []
    original = gen.model.generator.forward
    def recording(cond, truncation):
        seen.append(truncation)
        return original(cond, truncation)

    monkeypatch.setattr(gen.model.generator, "forward", recording)
    codes = sample_codes(gen, 1)
    low = gen(codes)
    assert seen == [0.4]
    other = G.BigGANGenerator(gen.model, truncation=0.7, fingerprint="tiny")
    assert not torch.allclose(low, other(codes))
    assert gen.fingerprint != other.fingerprint
    with pytest.raises(ValueError, match="truncation"):
        G.BigGANGenerator(gen.model, truncation=1.5, fingerprint="tiny")


def test_biggan_initial_code_is_truncated_noise_and_zero_class():
    from scipy import stats

    gen = G.BigGANGenerator(tiny_biggan(), fingerprint="tiny")
    codes = gen.initial_code(200, seed=0)
    assert torch.equal(codes[:, 128:], torch.zeros(200, 128))
    noise = codes[:, :128].flatten().double().numpy()
    assert np.abs(noise).max() < 1.4
    assert stats.kstest(noise / 0.7, stats.truncnorm(-2, 2).cdf).pvalue > 1e-3


def test_random_biggan_stand_in_is_finite_and_not_saturated():
    gen = G.BigGANGenerator(biggan.build_biggan(tiny_biggan_config(), seed=1), fingerprint="tiny")
    images = gen.generate(gen.initial_code(2, seed=0))
    assert torch.isfinite(images).all()
    assert ((images < 0.01) | (images > 0.99)).float().mean() < 0.5


def save_biggan(folder, state, config):
    folder.mkdir(exist_ok=True)
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(config.to_json_string())


def test_biggan_folder_loads_fully_and_partial_state_is_refused(tmp_path, biggan_gen):
    state = biggan_gen.model.state_dict()
    save_biggan(tmp_path / "full", state, tiny_biggan_config())
    rng = torch.get_rng_state()
    gen = G.make_generator("biggan", weights=tmp_path / "full")
    assert torch.equal(rng, torch.get_rng_state())
    codes = sample_codes(gen, 2)
    torch.testing.assert_close(gen(codes), biggan_gen(codes))
    assert gen.fingerprint.startswith("biggan-deep:sha256=")

    partial = {k: v for k, v in state.items() if k != "generator.gen_z.weight_orig"}
    save_biggan(tmp_path / "partial", partial, tiny_biggan_config())
    with pytest.raises(CheckpointError, match="generator.gen_z.weight_orig"):
        G.make_generator("biggan", weights=tmp_path / "partial")

    save_biggan(tmp_path / "extra", {**state, "stray.weight": torch.zeros(1)},
                tiny_biggan_config())
    with pytest.warns(UserWarning, match="stray.weight"):
        biggan.load_biggan(tmp_path / "extra")


def test_biggan_is_found_in_the_package_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(tmp_path))
    assert biggan.find_biggan_files() is None
    for file in ("pytorch_model.bin", "config.json"):
        url = biggan.BIGGAN_URL.format(res=256, file=file)
        name = hashlib.sha256(url.encode()).hexdigest() + ".etaghash"
        (tmp_path / name).write_bytes(b"x")
        (tmp_path / (name + ".json")).write_text("{}")  # the package's metadata file
    weights, config = biggan.find_biggan_files()
    assert weights.name.startswith(hashlib.sha256(
        biggan.BIGGAN_URL.format(res=256, file="pytorch_model.bin").encode()).hexdigest())
    assert config.suffix != ".json" and config != weights


class _Payload:
    """Pickled by reference to this module: a weights-only load must refuse to import it."""


def test_biggan_loads_from_package_cache_names_without_a_torch_suffix(tmp_path, monkeypatch,
                                                                      biggan_gen):
    # The package caches a download as sha256(url).sha256(etag): no .bin suffix.
    monkeypatch.setenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(tmp_path))
    def cached(file):
        url = biggan.BIGGAN_URL.format(res=256, file=file)
        return tmp_path / f"{hashlib.sha256(url.encode()).hexdigest()}.{'e' * 64}"

    weights, config = cached("pytorch_model.bin"), cached("config.json")
    torch.save(biggan_gen.model.state_dict(), weights)
    config.write_text(tiny_biggan_config().to_json_string())
    model, digest = biggan.load_biggan()
    assert digest == hashlib.sha256(weights.read_bytes()).hexdigest()
    gen = G.BigGANGenerator(model, fingerprint="cached")
    codes = sample_codes(gen, 2)
    torch.testing.assert_close(gen(codes), biggan_gen(codes))

    torch.save({"generator.gen_z.weight_orig": _Payload()}, weights)
    with pytest.raises(UnsafeCheckpointError, match="_Payload"):
        biggan.load_biggan()
    weights.write_bytes(b"PK\x03\x04 not a whole zip file")
    with pytest.raises(CheckpointError, match="truncated"):
        biggan.load_biggan()


# ------------------------------------------------------------------ registry

def test_unknown_generator_lists_the_choices():
    with pytest.raises(UnknownNameError, match="choose from: biggan, deepsim, fourier, maco, pixel"):
        G.make_generator("stylegan")


def test_options_are_checked():
    with pytest.raises(ValueError, match="allowed"):
        G.make_generator("fourier", truncation=0.5)
    with pytest.raises(ValueError, match="no weights"):
        G.make_generator("pixel", weights="somewhere.pt")
    assert G.make_generator("fourier", size=96, max_freq=5).image_size == 96
    with pytest.raises(ValueError, match="not both"):
        G.make_generator("deepsim", weights="fc6.pt", untrained=True)


@pytest.mark.usefixtures("no_weight_caches")
def test_list_generators_reports_dims_and_weights():
    listed = {row["name"]: row for row in G.list_generators()}
    assert set(listed) == {"deepsim", "biggan", "fourier", "pixel", "maco"}
    assert (listed["deepsim"]["dim"], listed["deepsim"]["sigma0"]) == (4096, 3.0)
    assert (listed["biggan"]["dim"], listed["biggan"]["sigma0"]) == (256, 0.2)
    assert listed["fourier"]["dim"] == G.FourierGenerator().dim
    assert not listed["deepsim"]["weights_present"] and not listed["biggan"]["weights_present"]
    assert listed["pixel"]["weights_present"] and not listed["pixel"]["needs_weights"]


# ------------------------------------------------------------------ published weights (opt-in)

@pytest.mark.pretrained
def test_published_deepsim_weights():
    path = deepsim.find_deepsim_weights()
    if path is None:
        pytest.skip("upconvGAN_fc6.pt not on this machine")
    gen = G.make_generator("deepsim", weights=path)
    assert gen.fingerprint == f"deepsim:sha256={deepsim.DEEPSIM_SHA256}"
    images = gen.generate(sample_codes(gen, 2))
    assert 0.05 < images.std() < 0.45
