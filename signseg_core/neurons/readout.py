"""Neuron models as readout units (paper §4.6): a fitted neuron model is a row on a network's
penultimate features, so :func:`as_readout_model` turns rows into the readout of a
:class:`~signseg_core.models.zoo.ZooModel` that ablation, visualization and metrics use unchanged,
and :func:`predicted_responses` scores images with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from signseg_core.models.zoo import ZooModel, shared_copy

__all__ = ["NeuronReadout", "as_readout_model", "predicted_responses"]


@dataclass(frozen=True, eq=False)
class NeuronReadout:
    """One neuron model as a readout row: ``response ≈ features @ weight + bias``.

    weight : float64 array (in_features,), finite (stored as a read-only copy).
    bias : finite float.
    name : the unit's label (e.g. the neuron id).
    """

    weight: np.ndarray
    bias: float
    name: str

    def __post_init__(self) -> None:
        w = np.array(self.weight, dtype=np.float64)
        if w.ndim != 1 or w.size == 0 or not np.isfinite(w).all():
            raise ValueError(f"weight must be a finite non-empty 1-D array, got shape {w.shape}")
        bias = float(self.bias)
        if not np.isfinite(bias):
            raise ValueError(f"bias must be finite, got {self.bias!r}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")
        w.setflags(write=False)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", bias)


def as_readout_model(model: ZooModel, readouts: Sequence[NeuronReadout], *,
                     name: str | None = None) -> ZooModel:
    """A ZooModel sharing ``model``'s trunk whose readout units are the neuron models.

    The new readout is an ``nn.Linear(n_features, len(readouts))`` holding the rows (unit ``i``
    is ``readouts[i]``, its class name ``readouts[i].name``). ``model`` is not modified; the
    trunk's weights are shared, not copied. The fingerprint hashes every weight, the new
    readout's included, so it differs from ``model``'s and from any other set of rows.
    """
    readouts = list(readouts)
    if not readouts:
        raise ValueError("give at least one NeuronReadout")
    for r in readouts:
        if not isinstance(r, NeuronReadout):
            raise ValueError(f"expected NeuronReadout objects, got {r!r:.80}")
        if r.weight.shape != (model.n_features,):
            raise ValueError(f"readout {r.name!r} has {r.weight.size} weights but "
                             f"{model.name} has {model.n_features} features")
    ref = model.readout.weight
    # skip_init: no random initialisation (and no draw from the global RNG) before the copy.
    linear = nn.utils.skip_init(nn.Linear, model.n_features, len(readouts), device=ref.device,
                                dtype=ref.dtype)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(np.stack([r.weight for r in readouts])))
        linear.bias.copy_(torch.tensor([r.bias for r in readouts], dtype=torch.float64))
    module = shared_copy(model.module)
    parent_name, _, child = model.readout_name.rpartition(".")
    setattr(module.get_submodule(parent_name) if parent_name else module, child, linear)
    return ZooModel(
        name=name or f"{model.name}+neurons", module=module, input_size=model.input_size,
        mean=model.mean, std=model.std, class_names=tuple(r.name for r in readouts),
        trained=model.trained, weights_source=model.weights_source, top1=None, arch=model.arch,
        description=f"{len(readouts)} neuron model(s) on the features of {model.name}",
    )


def predicted_responses(model: ZooModel, images: Tensor, *, batch_size: int = 64) -> Tensor:
    """The model's readout units (e.g. neuron models) on images ``(N, 3, H, W)`` in [0, 1].

    Returns a float32 Tensor ``(N, n_units)`` on the model's device, computed ``batch_size``
    images at a time without gradients.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    with torch.inference_mode():
        return torch.cat([model(images[i:i + batch_size]).float()
                          for i in range(0, images.shape[0], batch_size)])
