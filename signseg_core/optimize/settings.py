"""What determines a preferred image besides the model and the condition, and its store key.

:class:`VisualizeSettings` holds the optimiser's budget and options (generator, generations,
restarts, seed, population, step size, covariance mode, precision); :class:`ConditionKey` is the
store key of one condition's result under them, and :func:`evolution_seed` the seed of each
restart, drawn from the key alone so that a result never depends on what else ran beside it.
:func:`describe_optimizer` says in words which evolution strategy the settings run: by default an
isotropic ES with step-size adaptation, not CMA-ES (no covariance is adapted).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch

from signseg_core.conditions import Condition
from signseg_core.models.zoo import ZooModel
from signseg_core.optimize.evolve import CMAConfig
from signseg_core.store import CODE_VERSION

PRECISIONS = ("fp32", "bf16", "fp16")

#: What each ``covariance`` makes of the optimiser, in a few words (CLI help, captions).
COVARIANCE_NAMES = {
    "none": "isotropic (μ/μ_w, λ)-ES with cumulative step-size adaptation, no covariance "
            "adaptation",
    "diagonal": "sep-CMA-ES (diagonal covariance adaptation, Ros & Hansen 2008)",
    "full": "CMA-ES (full covariance adaptation, rank-one + rank-μ; d² memory per evolution)",
}
_STEP_RULE_NAMES = {"wang_ponce": "Wang–Ponce rate", "hansen": "Hansen's rate"}


@dataclass(frozen=True)
class VisualizeSettings:
    """Everything besides the model and the condition that determines a preferred image.

    ``sigma0=None`` takes the generator's own; ``popsize=None`` the ``4 + floor(3 log2 d)`` rule.
    ``precision="bf16"`` or ``"fp16"`` runs generator and backbone under half-precision autocast
    on CUDA (images stay in that dtype between the two; scores are accumulated in float32); on CPU
    it falls back to fp32, and the key says so.
    """

    generator: str = "fourier"
    generations: int = 100
    restarts: int = 10
    seed: int = 0
    popsize: int | None = None
    sigma0: float | None = None
    covariance: str = "none"  # see COVARIANCE_NAMES and describe_optimizer
    step_size_rule: str = "wang_ponce"
    precision: str = "fp32"
    generator_options: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        for name, low in (("generations", 1), ("restarts", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}; choose from {PRECISIONS}")
        # Validates popsize / sigma0 / covariance / step_size_rule the optimizer's way.
        self.cma_config(1.0)

    def precision_on(self, device: torch.device) -> str:
        """The precision that runs on ``device``: ``precision`` on CUDA, fp32 elsewhere."""
        return self.precision if torch.device(device).type == "cuda" else "fp32"

    def cma_config(self, generator_sigma0: float) -> CMAConfig:
        return CMAConfig(popsize=self.popsize, sigma0=self.sigma0 or generator_sigma0,
                         covariance=self.covariance, step_size_rule=self.step_size_rule,
                         maximize=True)


@dataclass(frozen=True)
class ConditionKey:
    """The store key of one condition's result."""

    model: str
    model_fingerprint: str
    unit: int
    sign: str  # "positive", "negative", or "control" for alpha = 0
    alpha: float
    generator: str
    generator_fingerprint: str
    optimizer: str  # JSON of the resolved CMAConfig
    generations: int
    restarts: int
    seed: int
    precision: str
    code_version: str = CODE_VERSION


def condition_key(model: ZooModel, generator, condition: Condition,
                  settings: VisualizeSettings, precision: str | None = None) -> ConditionKey:
    """The store key of ``condition``'s result. ``precision`` defaults to what runs on the
    model's device (:meth:`VisualizeSettings.precision_on`), the one a run there stores under.
    ``optimizer`` is the JSON of the resolved CMAConfig, or the generator's own description
    (``generator.optimizer_key(settings)``) for one that has it (the gradient-ascent maco)."""
    precision = precision or settings.precision_on(model.device)
    sign = "control" if condition.is_control else condition.sign
    own = getattr(generator, "optimizer_key", None)
    optimizer = own(settings) if own is not None else \
        json.dumps(settings.cma_config(generator.sigma0).to_dict(), sort_keys=True)
    return ConditionKey(model.name, model.fingerprint, condition.unit, sign, condition.alpha,
                        generator.name, generator.fingerprint, optimizer, settings.generations,
                        settings.restarts, settings.seed, precision)


def evolution_seed(key: ConditionKey, restart: int) -> int:
    """A 31-bit seed from the condition and restart: independent of what else is batched."""
    text = f"{key.seed}|{key.unit}|{key.sign}|{key.alpha:.6f}|{restart}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def describe_run(settings: VisualizeSettings, generator) -> str:
    """What ``settings`` run on ``generator``, in words: a gradient generator's own description
    (e.g. MACO's Adam on phases), else :func:`describe_optimizer` at the generator's ``dim``."""
    if getattr(generator, "method", "evolution") == "gradient":
        return generator.describe(settings)
    return describe_optimizer(settings, generator.dim)


def describe_optimizer(settings: VisualizeSettings | CMAConfig, dim: int) -> str:
    """The exact words for the evolution strategy ``settings`` run on codes of dimension ``dim``.

    ``covariance="none"`` (the default) is *not* CMA-ES: "isotropic (μ/μ_w, λ)-ES with cumulative
    step-size adaptation (Wang–Ponce rate c_σ = 0.050), no covariance adaptation; λ = 40, μ = 20
    at d = 4096". ``"diagonal"`` is sep-CMA-ES and ``"full"`` CMA-ES, each with its covariance
    learning rates c_1 (rank one) and c_μ (rank μ) at this ``dim``.
    """
    config = settings.cma_config(1.0) if isinstance(settings, VisualizeSettings) else settings
    if not isinstance(config, CMAConfig):
        raise ValueError(f"settings must be VisualizeSettings or CMAConfig, got {settings!r}")
    p = config.strategy_parameters(dim)
    csa = (f"cumulative step-size adaptation ({_STEP_RULE_NAMES[config.step_size_rule]} "
           f"c_σ = {p['c_sigma']:.2g})")
    sizes = f"λ = {p['popsize']}, μ = {p['mu']} at d = {dim}"
    if config.covariance == "none":
        return f"isotropic (μ/μ_w, λ)-ES with {csa}, no covariance adaptation; {sizes}"
    rates = f"c_1 = {p['c_1']:.1e}, c_μ = {p['c_mu']:.1e}"
    if config.covariance == "diagonal":
        return (f"sep-CMA-ES: (μ/μ_w, λ)-ES with {csa} and diagonal covariance adaptation "
                f"(Ros & Hansen 2008; {rates}); {sizes}")
    return (f"CMA-ES: (μ/μ_w, λ)-ES with {csa} and full covariance adaptation (rank-one + "
            f"rank-μ; {rates}); {sizes}")
