"""signseg engine: what the positive and negative weights of a vision network each encode.

The names most callers need are here; everything else lives in its module (see README).
"""

from .ablation import Condition, ablate_weights, ablated_readout, condition_grid
from .registry import list_models, load_model
from .signs import dale_index

__all__ = ["Condition", "ablate_weights", "ablated_readout", "condition_grid", "dale_index",
           "list_models", "load_model"]
