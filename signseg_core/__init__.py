"""signseg engine: what the positive and negative weights of a vision network each encode.

The names most callers need are here; everything else lives in its module (see README).
"""

from signseg_core.ablation import Condition, ablate_weights, ablated_readout, condition_grid
from signseg_core.models.registry import list_models, load_model
from signseg_core.signs import dale_index

__all__ = ["Condition", "ablate_weights", "ablated_readout", "condition_grid", "dale_index",
           "list_models", "load_model"]
