"""The networks a run trains: any torchvision classifier by name, with ReLU or with Tanh.

The swap is :func:`signseg_core.models.registry.relu_to_tanh`, the zoo's own, so a trained Tanh
network loads into the zoo's ``<arch>_tanh`` unchanged. It replaces ``nn.ReLU`` modules only; a
network whose forward also calls ``F.relu`` (DenseNet does) or rectifies otherwise (ReLU6) would
keep rectifying, so :func:`rectifiers_left` runs one forward pass and names every rectifier that
still runs, and :func:`build_network` refuses such a network for Tanh. torchvision's ResNets have
no functional ReLU: each block's ``relu`` is one ``nn.ReLU(inplace=True)`` module called twice.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from signseg_core.errors import UnknownNameError
from signseg_core.models.registry import relu_to_tanh
from signseg_core.training.recipe import ACTIVATIONS, TrainingSetupError

#: Modules that rectify without being an ``nn.ReLU`` (the Tanh swap would leave them).
RECTIFIER_MODULES = (nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.CELU, nn.ELU, nn.SELU,
                     nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish, nn.Softplus)


@lru_cache(maxsize=1)
def classification_archs() -> tuple[str, ...]:
    """torchvision's image-classification architectures, by the names ``get_model`` takes."""
    import torchvision.models as tvm  # deferred: torchvision takes ~1 s to import

    return tuple(tvm.list_models(module=tvm))


def check_arch(arch: str) -> str:
    """``arch`` when torchvision builds it as a classifier, else ``UnknownNameError`` with the
    choices."""
    if arch not in classification_archs():
        raise UnknownNameError("architecture", arch, classification_archs())
    return arch


def check_activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise TrainingSetupError(f"unknown activation {activation!r}; choose from "
                                 f"{', '.join(ACTIVATIONS)}")
    return activation


class _RectifierCalls(TorchFunctionMode):
    """Records the names of rectifying torch functions called inside the block."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if "relu" in name or name in ("hardtanh", "hardtanh_", "silu", "gelu", "hardswish"):
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def rectifiers_left(net: nn.Module, *, image_size: int = 64) -> list[str]:
    """Every rectifier ``net`` still has: its rectifying modules other than ``nn.Tanh`` (by
    name and type), and the rectifying functions one eval-mode forward pass on zeros
    ``(1, 3, image_size, image_size)`` calls. Empty for a ResNet after :func:`relu_to_tanh`."""
    found = [f"{name} ({type(m).__name__})" for name, m in net.named_modules()
             if isinstance(m, (nn.ReLU, *RECTIFIER_MODULES))]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), _RectifierCalls() as mode:
            net(torch.zeros(1, 3, image_size, image_size))
    finally:
        net.train(was_training)
    found += sorted(f"a call to {name}" for name in set(mode.calls))
    return found


def build_network(arch: str, activation: str, *, num_classes: int, seed: int = 0,
                  check_size: int = 64) -> nn.Module:
    """torchvision's ``arch`` with ``num_classes`` outputs, initialised from ``seed`` (the global
    RNG is left as it was), every ``nn.ReLU`` replaced by ``nn.Tanh`` when ``activation`` is
    ``"tanh"``. A network that would still rectify after the swap is refused, naming what.
    Inception v3 and GoogLeNet are built without their auxiliary heads."""
    from torchvision.models import get_model  # deferred: torchvision takes ~1 s to import

    check_arch(arch)
    check_activation(activation)
    options = {"aux_logits": False, "init_weights": True} if arch in (
        "inception_v3", "googlenet") else {}
    if arch == "inception_v3":  # as the zoo builds it, so that the zoo runs what was trained
        options["transform_input"] = True
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = get_model(arch, weights=None, num_classes=num_classes, **options)
    if activation == "tanh":
        before = sum(isinstance(m, nn.ReLU) for m in net.modules())
        relu_to_tanh(net)
        left = rectifiers_left(net, image_size=max(check_size, 75 if arch == "inception_v3"
                                                   else check_size))
        if before == 0 or left:
            what = ", ".join(left[:4]) if left else "no nn.ReLU module to replace"
            raise TrainingSetupError(
                f"{arch} cannot be trained with Tanh: after replacing its nn.ReLU modules it "
                f"still has {what}; choose an architecture whose every nonlinearity is an "
                "nn.ReLU module (alexnet, vgg*, resnet*, resnext*, wide_resnet*)")
    return net


def logits_of(output) -> torch.Tensor:
    """The logits of a forward pass (torchvision's Inception/GoogLeNet return a named tuple in
    training mode when built with auxiliary heads)."""
    return output.logits if hasattr(output, "logits") else output
