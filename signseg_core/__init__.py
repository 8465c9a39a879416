"""signseg engine: what the positive and negative weights of a vision network each encode.

The names most callers need are here; everything else lives in its folder (see
``docs/architecture.md``). They load on first use, so ``import signseg_core`` (and the command
line's argument parsing) does not import torch.
"""

import importlib

_EXPORTS = {
    "Condition": "signseg_core.conditions",
    "condition_grid": "signseg_core.conditions",
    "ablate_weights": "signseg_core.ablation",
    "ablated_readout": "signseg_core.ablation",
    "dale_index": "signseg_core.signs",
    "list_models": "signseg_core.models.registry",
    "load_model": "signseg_core.models.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'signseg_core' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
