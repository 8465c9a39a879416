"""The DeePSiM fc6 generator (Dosovitskiy & Brox, 2016) and its weights.

The architecture and the state-dict key names follow the public PyTorch port "upconvGAN" by
Binxu Wang (``circuit_toolkit/GAN_utils.py``), whose weights are on Hugging Face as
``binxu/DeePSim_DosovitskiyBrox2016/upconvGAN_fc6.pt``: three ``Linear(4096, 4096)`` layers
``defc7, defc6, defc5``, a reshape to ``(256, 4, 4)``, then nine transposed convolutions
``deconv5, conv5_1, deconv4, conv4_1, deconv3, conv3_1, deconv2, deconv1, deconv0`` up to
``(3, 256, 256)``, with LeakyReLU(0.3) after every layer but the last.

The raw output is a mean-subtracted **BGR** image in 0-255 units (Caffe convention). The public
``visualize`` flips the channels to RGB first and then adds ``RGB_mean = (123, 117, 104)``, so the
mean is in RGB order: R + 123, G + 117, B + 104. :func:`raw_to_rgb01` does the same.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
import warnings
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from signseg_core import paths
from signseg_core.errors import CheckpointError, WeightsNotFoundError
from signseg_core.models.checkpoints import load_into, load_state_dict_file, sha256_file

DEEPSIM_REPO = "binxu/DeePSim_DosovitskiyBrox2016"
DEEPSIM_FILENAME = "upconvGAN_fc6.pt"
DEEPSIM_URL = f"https://huggingface.co/{DEEPSIM_REPO}/resolve/main/{DEEPSIM_FILENAME}"
DEEPSIM_SIZE = 224_398_749
DEEPSIM_SHA256 = "d92b0897c56bf8d8d082dc9ea9f0a806490d3da064a7929e4ff813fa95623875"
_HINT = f"download it from {DEEPSIM_URL}"

CODE_DIM = 4096
RGB_MEAN = (123.0, 117.0, 104.0)  # added after the BGR -> RGB flip: R, G, B
LEAKY_SLOPE = 0.3

# (name, in_channels, out_channels, kernel, stride); padding is 1 everywhere.
DECONV_LAYERS = (
    ("deconv5", 256, 256, 4, 2),
    ("conv5_1", 256, 512, 3, 1),
    ("deconv4", 512, 256, 4, 2),
    ("conv4_1", 256, 256, 3, 1),
    ("deconv3", 256, 128, 4, 2),
    ("conv3_1", 128, 128, 3, 1),
    ("deconv2", 128, 64, 4, 2),
    ("deconv1", 64, 32, 4, 2),
    ("deconv0", 32, 3, 4, 2),
)
FC_LAYERS = ("defc7", "defc6", "defc5")


class DeePSiMFc6(nn.Module):
    """DeePSiM fc6 generator network (weights: :func:`load_deepsim` or :func:`make_untrained`).

    ``forward`` maps codes ``(B, 4096)`` to the raw output ``(B, 3, 256, 256)``: mean-subtracted
    BGR in 0-255 units, unclamped. :func:`raw_to_rgb01` turns it into an RGB image in [0, 1].
    """

    def __init__(self):
        super().__init__()
        for name in FC_LAYERS:
            setattr(self, name, nn.Linear(CODE_DIM, CODE_DIM))
        for name, c_in, c_out, k, s in DECONV_LAYERS:
            setattr(self, name, nn.ConvTranspose2d(c_in, c_out, k, stride=s, padding=1))
        self.weights_sha256: str | None = None

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = codes
        for name in FC_LAYERS:
            x = nn.functional.leaky_relu(getattr(self, name)(x), LEAKY_SLOPE)
        x = x.reshape(-1, 256, 4, 4)
        for i, (name, *_rest) in enumerate(DECONV_LAYERS):
            x = getattr(self, name)(x)
            if i < len(DECONV_LAYERS) - 1:
                x = nn.functional.leaky_relu(x, LEAKY_SLOPE)
        return x


def raw_to_rgb01(raw: torch.Tensor) -> torch.Tensor:
    """Turn DeePSiM's raw output into an image.

    Parameters
    ----------
    raw : Tensor (B, 3, H, W)
        Mean-subtracted BGR in 0-255 units.

    Returns
    -------
    Tensor (B, 3, H, W) in [0, 1]
        RGB: channels flipped, then ``RGB_MEAN`` (R 123, G 117, B 104) added, clamped to
        [0, 255] and divided by 255.
    """
    return (raw.flip(1) + _rgb_mean(raw.device, raw.dtype)).clamp(0.0, 255.0) / 255.0


@lru_cache(maxsize=8)
def _rgb_mean(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``RGB_MEAN`` as a (1, 3, 1, 1) tensor, made once per device and dtype (not per batch)."""
    with torch.inference_mode(False):  # usable by gradient passes too
        return torch.tensor(RGB_MEAN, dtype=dtype, device=device).view(1, 3, 1, 1)


def empty_net() -> DeePSiMFc6:
    """The architecture without storage: no global-RNG draws, no 200 MB default init."""
    with torch.device("meta"):
        return DeePSiMFc6()


def make_untrained(*, seed: int) -> DeePSiMFc6:
    """A DeePSiM fc6 with seeded random weights that give varied, unsaturated images.

    Variance-preserving normal weights for LeakyReLU(0.3) (fan-in of a stride-2 transposed
    convolution is ``in * k**2 / 4``), zero biases, and a last layer scaled so that codes with
    std 3 (DeePSiM's sigma0) give raw pixels with std of roughly 60 grey levels.
    """
    net = empty_net().to_empty(device="cpu")
    gen = torch.Generator().manual_seed(int(seed))
    gain = (2.0 / (1.0 + LEAKY_SLOPE**2)) ** 0.5
    with torch.no_grad():
        for name in FC_LAYERS:
            layer = getattr(net, name)
            layer.weight.normal_(0.0, gain / CODE_DIM**0.5, generator=gen)
            layer.bias.zero_()
        for i, (name, c_in, _c_out, k, s) in enumerate(DECONV_LAYERS):
            layer = getattr(net, name)
            std = gain / (c_in * k * k / (s * s)) ** 0.5
            if i == len(DECONV_LAYERS) - 1:
                std *= 20.0
            layer.weight.normal_(0.0, std, generator=gen)
            layer.bias.zero_()
    return net.eval().requires_grad_(False)


def normalise_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the key spellings seen in published upconvGAN files onto :class:`DeePSiMFc6`'s.

    Drops a leading ``module.`` (DataParallel) or ``G.`` (saved from the whole upconvGAN
    wrapper) and the legacy ``.1.`` infix the public loader also removes.
    """
    out = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "G."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key.replace(".1.", ".")] = value
    return out


def verify_weights_file(path: str | Path, *, expected_size: int | None = None,
                        expected_sha256: str | None = None) -> str:
    """Check a downloaded file's size and SHA-256 (defaults: the published DeePSiM fc6 file).

    Returns the digest; raises :class:`CheckpointError` naming the expected and found values.
    """
    path = Path(path)
    size = DEEPSIM_SIZE if expected_size is None else expected_size
    sha = DEEPSIM_SHA256 if expected_sha256 is None else expected_sha256
    found = path.stat().st_size
    if found != size:
        raise CheckpointError(f"{path.name} has {found} bytes, expected {size} (truncated?)")
    digest = sha256_file(path)
    if digest != sha:
        raise CheckpointError(f"{path.name} has SHA-256 {digest}, expected {sha}")
    return digest


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else the default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return xdg / "huggingface" / "hub"


def find_deepsim_weights() -> Path | None:
    """``weights_dir()/upconvGAN_fc6.pt`` if present, else the newest Hugging Face snapshot."""
    local = paths.weights_dir() / DEEPSIM_FILENAME
    if local.is_file():
        return local
    repo = hf_hub_cache() / ("models--" + DEEPSIM_REPO.replace("/", "--"))
    found = [p for p in repo.glob(f"snapshots/*/{DEEPSIM_FILENAME}") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def download_deepsim(*, url: str | None = None) -> Path:
    """Download the published weights and verify their size and SHA-256.

    With ``huggingface_hub`` importable and no ``url``, uses ``hf_hub_download`` (file stays in
    the HF cache); otherwise streams ``url`` (default :data:`DEEPSIM_URL`) into a temporary file
    in ``weights_dir()`` and moves it into place only once verified. Ignores ``offline()``:
    callers check it.
    """
    if url is None:
        try:
            from huggingface_hub import hf_hub_download  # deferred: optional, urllib otherwise
        except ImportError:
            url = DEEPSIM_URL
        else:
            path = Path(hf_hub_download(repo_id=DEEPSIM_REPO, filename=DEEPSIM_FILENAME))
            verify_weights_file(path)
            return path
    target = paths.weights_dir() / DEEPSIM_FILENAME
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=DEEPSIM_FILENAME, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        verify_weights_file(tmp_name)
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def load_deepsim(path: str | Path | None = None, *, download: bool | None = None) -> DeePSiMFc6:
    """The DeePSiM fc6 generator with its published weights, in eval mode, frozen.

    Parameters
    ----------
    path : path, optional
        A state-dict file (``.pt``, ``.pth``, ``.bin``, ``.ckpt``, ``.tar`` or ``.safetensors``).
        Default: :func:`find_deepsim_weights`, downloading when absent.
    download : bool, optional
        Whether a missing file may be downloaded; default: unless ``paths.offline()``.

    A file whose hash differs from the published one is used (with a warning) only when its keys
    and shapes fit exactly. ``net.weights_sha256`` holds the file's digest.

    Raises
    ------
    WeightsNotFoundError
        No file and no download allowed; the message names the file, its place and the URL.
    CheckpointError
        The file is truncated, has an unknown extension, or does not fit the architecture
        (read and checked by :mod:`signseg_core.models.checkpoints`); :class:`UnsafeCheckpointError`
        when unpickling it would run code.
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError("DeePSiM fc6", path, _HINT)
    else:
        path = find_deepsim_weights()
        if path is None:
            allowed = not paths.offline() if download is None else download
            if not allowed:
                local = paths.weights_dir() / DEEPSIM_FILENAME
                raise WeightsNotFoundError("DeePSiM fc6", local, _HINT)
            path = download_deepsim()
    state = normalise_keys(load_state_dict_file(path, what="DeePSiM fc6", hint=_HINT))
    net = empty_net().to_empty(device="cpu")  # storage without init: no global-RNG draws
    load_into(net, state, what="DeePSiM fc6")
    digest = sha256_file(path)
    if digest != DEEPSIM_SHA256:
        warnings.warn(
            f"{path} has SHA-256 {digest[:16]}..., not the published {DEEPSIM_SHA256[:16]}...; "
            "using it because its keys and shapes fit DeePSiM fc6",
            stacklevel=2,
        )
    net.weights_sha256 = digest
    return net.eval().requires_grad_(False)
