"""BigGAN-deep weights: finding, downloading, loading and seeded random stand-ins.

The network comes from ``pytorch_pretrained_biggan`` (Brock et al. 2019, the Hugging Face port);
this module only finds its two files (``pytorch_model.bin`` and ``config.json``) in
``weights_dir()/biggan-deep-<res>/`` or the package's own download cache, and loads them through
:mod:`signseg_core.models.checkpoints` (weights-only unpickling, every parameter and buffer
checked). :class:`signseg_core.generators.catalog.BigGANGenerator` wraps the model as a
code-to-image generator.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from signseg_core import paths
from signseg_core.errors import CheckpointError, WeightsNotFoundError
from signseg_core.models import checkpoints

BIGGAN_URL = "https://s3.amazonaws.com/models.huggingface.co/biggan/biggan-deep-{res}-{file}"
BIGGAN_WEIGHTS, BIGGAN_CONFIG = "pytorch_model.bin", "config.json"
# Layer layouts (upsample?, in/ch, out/ch) for untrained stand-ins; 128 is the package default.
_BIGGAN_256_LAYERS = [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8),
                      (False, 8, 8), (True, 8, 8), (False, 8, 4), (True, 4, 4), (False, 4, 2),
                      (True, 2, 2), (False, 2, 1), (True, 1, 1)]


def biggan_cache_dir() -> Path:
    """``pytorch_pretrained_biggan``'s download cache (``PYTORCH_PRETRAINED_BIGGAN_CACHE``)."""
    default = Path.home() / ".pytorch_pretrained_biggan"
    return Path(os.environ.get("PYTORCH_PRETRAINED_BIGGAN_CACHE", default)).expanduser()


def find_biggan_files(resolution: int = 256) -> tuple[Path, Path] | None:
    """``(weights, config)`` from ``weights_dir()/biggan-deep-<res>/`` or the package cache."""
    local = paths.weights_dir() / f"biggan-deep-{resolution}"
    if (local / BIGGAN_WEIGHTS).is_file() and (local / BIGGAN_CONFIG).is_file():
        return local / BIGGAN_WEIGHTS, local / BIGGAN_CONFIG
    found = []
    for file in (BIGGAN_WEIGHTS, BIGGAN_CONFIG):  # the package names files sha256(url)[.etag]
        url_hash = hashlib.sha256(BIGGAN_URL.format(res=resolution, file=file).encode()).hexdigest()
        hits = [p for p in biggan_cache_dir().glob(url_hash + "*") if p.suffix != ".json"]
        found.append(max(hits, key=lambda p: p.stat().st_mtime) if hits else None)
    return tuple(found) if all(found) else None


def _biggan_package():
    try:
        import pytorch_pretrained_biggan  # deferred: optional package, BigGAN only
    except ImportError as exc:
        raise ImportError("BigGAN needs the package pytorch-pretrained-biggan "
                          "(pip install pytorch-pretrained-biggan)") from exc
    return pytorch_pretrained_biggan


def build_biggan(config, *, seed: int, exact_sigma: bool = True):
    """A seeded random ``BigGAN(config)``: equal seeds, equal weights; global RNG untouched.

    With ``exact_sigma`` every spectral norm's (u, v) gets 30 power-iteration steps towards its
    weight's top singular pair; random (u, v) underestimate sigma in eval mode, and activations
    blow up to NaN.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = _biggan_package().BigGAN(config)
    with torch.no_grad():  # the package leaves the final batch-norm affine uninitialised
        model.generator.bn.weight.fill_(1.0)
        model.generator.bn.bias.zero_()
        for module in model.modules() if exact_sigma else ():
            if hasattr(module, "weight_orig"):
                w, u = module.weight_orig.flatten(1), module.weight_u
                for _ in range(30):
                    v = nn.functional.normalize(w.T @ u, dim=0)
                    u = nn.functional.normalize(w @ v, dim=0)
                module.weight_u.copy_(u)
                module.weight_v.copy_(v)
    return model.eval().requires_grad_(False)


def untrained_biggan(*, resolution: int, seed: int):
    """A seeded random BigGAN-deep stand-in (:func:`build_biggan`) at ``resolution`` 128 or 256.

    256 uses a narrow 12-block layout (:data:`_BIGGAN_256_LAYERS`), 128 the package's default.
    """
    if resolution not in (128, 256):
        raise ValueError("an untrained BigGAN stand-in exists for resolution 128 or 256")
    config_class = _biggan_package().BigGANConfig
    layers = _BIGGAN_256_LAYERS if resolution == 256 else config_class().layers
    return build_biggan(config_class(output_dim=resolution, layers=layers), seed=seed)


def load_biggan(weights: str | Path | None = None, *, resolution: int = 256,
                download: bool | None = None):
    """BigGAN-deep with every parameter and buffer loaded from ``pytorch_model.bin``.

    ``weights``: a folder holding ``pytorch_model.bin`` and ``config.json`` (or the .bin itself,
    config beside it); default: :func:`find_biggan_files`, downloading unless offline.
    Returns ``(model, sha256 of the weights file)``. The package's ``from_pretrained`` loads with
    ``strict=False``, so a wrong file would silently give random weights: here missing or
    misshapen keys raise :class:`CheckpointError` and unexpected ones warn.
    """
    what = f"BigGAN-deep-{resolution}"
    if weights is not None:
        folder = Path(weights).expanduser()
        folder = folder.parent if folder.is_file() else folder
        files = (folder / BIGGAN_WEIGHTS, folder / BIGGAN_CONFIG)
        for f in files:
            if not f.is_file():
                raise WeightsNotFoundError(what, f)
    else:
        files = find_biggan_files(resolution)
    if files is None:
        if (paths.offline() if download is None else not download):
            raise WeightsNotFoundError(
                what, paths.weights_dir() / f"biggan-deep-{resolution}" / BIGGAN_WEIGHTS,
                f"with its {BIGGAN_CONFIG} beside it, from "
                + BIGGAN_URL.format(res=resolution, file=BIGGAN_WEIGHTS))
        from pytorch_pretrained_biggan.file_utils import cached_path  # deferred: optional package

        files = tuple(Path(cached_path(BIGGAN_URL.format(res=resolution, file=f)))
                      for f in (BIGGAN_WEIGHTS, BIGGAN_CONFIG))
    try:
        config_dict = json.loads(files[1].read_text(encoding="utf-8"))
        config = _biggan_package().BigGANConfig.from_dict(config_dict)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{files[1]} is not a BigGAN config: {exc}") from exc
    model = build_biggan(config, seed=0, exact_sigma=False)  # every tensor is overwritten
    state = checkpoints.load_state_dict_file(files[0], what=what, fmt="torch")
    ignored = checkpoints.load_into(model, state, what=f"{what} ({files[0]})", strict=False)
    if ignored:
        warnings.warn(f"{files[0]}: ignored unexpected keys {list(ignored[:5])}", stacklevel=2)
    return model.eval().requires_grad_(False), checkpoints.sha256_file(files[0])
