"""Preferred images per ablation condition: batched CMA-ES over a generator's codes.

Every evolution of a request (conditions × restarts) advances in lockstep: per generation, one
generator pass and one backbone pass over all of their samples (in memory-sized chunks), and the
per-condition ablated readout rows applied as one batched dot product. Results are stored per
condition, keyed by everything that determines them, so a later request for any subset is read
back instead of recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from signseg_core.ablation import ablated_readout
from signseg_core.conditions import Condition, unique_conditions
from signseg_core.figures.png import png_bytes, png_decode
from signseg_core.models.zoo import ZooModel
from signseg_core.optimize.evolve import CMAConfig, run_cmaes
from signseg_core.store import CODE_VERSION, ResultStore, default_store

PRECISIONS = ("fp32", "bf16", "fp16")
_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


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
    covariance: str = "none"
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


@dataclass
class ConditionResult:
    """All restarts of one condition.

    images : uint8 (R, H, W, 3); best_scores, intact_scores : (R,) float64 (the ablated objective
    and the intact unit's logit on the same image); max_per_gen, mean_per_gen : (G, R);
    best_codes, final_means : (R, d) float32.
    """

    key: ConditionKey
    images: np.ndarray
    best_scores: np.ndarray
    intact_scores: np.ndarray
    max_per_gen: np.ndarray
    mean_per_gen: np.ndarray
    best_codes: np.ndarray
    final_means: np.ndarray
    cancelled: bool = False
    from_store: bool = field(default=False, compare=False)

    @property
    def condition(self) -> Condition:
        sign = "positive" if self.key.sign == "control" else self.key.sign
        return Condition(self.key.unit, sign, self.key.alpha)

    @property
    def best_index(self) -> int:
        return int(np.nanargmax(self.best_scores)) if np.isfinite(self.best_scores).any() else 0

    @property
    def best_image(self) -> np.ndarray:
        return self.images[self.best_index]

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in
                ("best_scores", "intact_scores", "max_per_gen", "mean_per_gen",
                 "best_codes", "final_means")}


def condition_key(model: ZooModel, generator, condition: Condition,
                  settings: VisualizeSettings, precision: str | None = None) -> ConditionKey:
    """The store key of ``condition``'s result. ``precision`` defaults to what runs on the
    model's device (:meth:`VisualizeSettings.precision_on`), the one a run there stores under."""
    precision = precision or settings.precision_on(model.device)
    sign = "control" if condition.is_control else condition.sign
    optimizer = json.dumps(settings.cma_config(generator.sigma0).to_dict(), sort_keys=True)
    return ConditionKey(model.name, model.fingerprint, condition.unit, sign, condition.alpha,
                        generator.name, generator.fingerprint, optimizer, settings.generations,
                        settings.restarts, settings.seed, precision)


def evolution_seed(key: ConditionKey, restart: int) -> int:
    """A 31-bit seed from the condition and restart: independent of what else is batched."""
    text = f"{key.seed}|{key.unit}|{key.sign}|{key.alpha:.6f}|{restart}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


# -- images <-> store -------------------------------------------------------------------------

def to_uint8(images: Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] → uint8 (N, H, W, 3)."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8) \
        .permute(0, 2, 3, 1).cpu().numpy()


def _save(store: ResultStore, result: ConditionResult) -> None:
    store.put(result.key, result.arrays(), blobs={"png": [png_bytes(im) for im in result.images]})


def load_condition(store: ResultStore, key: ConditionKey) -> ConditionResult | None:
    """One stored condition, or None when absent or unreadable (an unreadable one is deleted)."""
    got = store.get(key)
    if got is None:
        return None
    arrays, _, blobs = got
    try:
        images = np.stack([png_decode(b) for b in blobs["png"]])
        return ConditionResult(key, images, **{k: arrays[k] for k in (
            "best_scores", "intact_scores", "max_per_gen", "mean_per_gen", "best_codes",
            "final_means")}, from_store=True)
    except Exception:  # a field missing or an image that will not decode: recompute
        store.delete(key)
        return None


# -- the batched run --------------------------------------------------------------------------

def _autocast(device: torch.device, precision: str):
    if precision in _HALF and device.type == "cuda":
        return torch.autocast("cuda", dtype=_HALF[precision])
    return contextlib.nullcontext()


def default_batch_size(device: torch.device) -> int:
    return 512 if device.type == "cuda" else 64


def _chunk_features(model: ZooModel, generator, *, half: bool, compile: bool):
    """codes (n, d) → the readout's input features (n, F): generator, preprocessing, trunk.

    Under half precision the generator's images go to the trunk in their own dtype (no float32
    round trip). ``compile=True`` hands the whole chain to ``torch.compile`` (one graph for a fixed
    chunk shape: the caller pads the last chunk), which fuses the elementwise work around the
    convolutions; numerically it differs from eager only by rounding.
    """
    def chunk(codes: Tensor) -> Tensor:
        images = generator(codes)
        return model.features(images if half else images.float(), validate=False)

    return torch.compile(chunk, dynamic=False) if compile else chunk


def make_scorer(model: ZooModel, generator, rows: Tensor, biases: Tensor, evo_cond: Tensor,
                popsize: int, *, batch_size: int, precision: str,
                compile: bool = False) -> Callable[[Tensor], Tensor]:
    """codes (B * popsize, d), evolution-major → each sample's score under its own condition.

    Samples are scored ``batch_size`` at a time; with ``compile=True`` a short last chunk is
    padded to ``batch_size`` so that one compiled graph serves every chunk.
    """
    device = model.device
    row_cond = evo_cond.repeat_interleave(popsize)  # (B * popsize,)
    half = precision in _HALF and device.type == "cuda"
    features = _chunk_features(model, generator, half=half, compile=compile)

    def score(codes: Tensor) -> Tensor:
        out = torch.empty(codes.shape[0], device=device, dtype=torch.float32)
        for start in range(0, codes.shape[0], batch_size):
            stop = min(start + batch_size, codes.shape[0])
            chunk = codes[start:stop]
            if compile and stop - start < batch_size:
                chunk = torch.cat([chunk, chunk[-1:].expand(batch_size - (stop - start), -1)])
            with _autocast(device, precision):
                feats = features(chunk)[: stop - start]
            c = row_cond[start:stop]
            out[start:stop] = (feats.float() * rows[c]).sum(1) + biases[c]
        return out

    return score


def visualize(
    model: ZooModel,
    conditions: Sequence[Condition],
    *,
    settings: VisualizeSettings = VisualizeSettings(),
    generator=None,
    store: ResultStore | None | bool = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    compile: bool = False,
) -> list[ConditionResult]:
    """Preferred images for every condition (controls de-duplicated), from the store or computed.

    Parameters
    ----------
    model : the network; its readout is never modified.
    conditions : (unit, sign, alpha) conditions; alpha = 0 of either sign is the one control.
    generator : a built generator; default ``make_generator(settings.generator)`` on the
        model's device.
    store : a ResultStore; None for the default store under the cache dir; False for none.
    progress : called as ``progress(generations_done, generations_total)``.
    should_stop : asked every generation; True cancels (nothing is stored, results are marked).
    compile : score through ``torch.compile`` (worth it for long CUDA runs; the first chunk pays
        the compile time). Not part of the key: it changes scores only by rounding.

    Returns
    -------
    One ConditionResult per unique condition, in the order first given.
    """
    from signseg_core.generators.catalog import make_generator

    device = model.device
    if generator is None:
        generator = make_generator(settings.generator, device=device,
                                   **dict(settings.generator_options))
    precision = settings.precision_on(device)
    if store is None:
        store = default_store()
    elif store is False:
        store = None
    conds = unique_conditions(conditions)
    keys = [condition_key(model, generator, c, settings, precision) for c in conds]
    found = {k: load_condition(store, k) for k in keys} if store is not None else {}
    todo = [(c, k) for c, k in zip(conds, keys) if found.get(k) is None]
    if todo:
        for result in _run(model, generator, todo, settings, precision,
                           batch_size or default_batch_size(device), progress, should_stop,
                           compile):
            found[result.key] = result
            if store is not None and not result.cancelled:
                _save(store, result)
    elif progress is not None:
        progress(settings.generations, settings.generations)
    return [found[k] for k in keys]


def _run(model, generator, todo, settings, precision, batch_size, progress, should_stop,
         compile=False):
    device = model.device
    R = settings.restarts
    conds = [c for c, _ in todo]
    rows, biases = ablated_readout(model.readout.weight, model.readout.bias, conds)
    rows, biases = rows.to(device, torch.float32), biases.to(device, torch.float32)
    C = len(conds)
    evo_cond = torch.arange(C, device=device).repeat_interleave(R)
    seeds = [evolution_seed(k, r) for _, k in todo for r in range(R)]
    x0 = torch.cat([generator.initial_code(1, seed=s) for s in seeds]).to(device)
    config = settings.cma_config(generator.sigma0)
    popsize = config.strategy_parameters(x0.shape[1])["popsize"]
    score = make_scorer(model, generator, rows, biases, evo_cond, popsize,
                        batch_size=batch_size, precision=precision, compile=compile)
    tick = None if progress is None else (lambda done, total, _best: progress(done, total))
    with torch.inference_mode():
        res = run_cmaes(score, x0, config=config, seeds=seeds, generations=settings.generations,
                        progress=tick, should_stop=should_stop)
        images, intact = [], []
        units = torch.tensor([c.unit for c in conds], device=device).repeat_interleave(R)
        for start in range(0, res.best_code.shape[0], batch_size):
            stop = min(start + batch_size, res.best_code.shape[0])
            with _autocast(device, precision):
                imgs = generator(res.best_code[start:stop].to(x0.dtype)).float()
            logits = model(imgs.clamp(0, 1))
            intact.append(logits.gather(1, units[start:stop, None])[:, 0].double())
            images.append(to_uint8(imgs))
    images = np.concatenate(images)
    intact = torch.cat(intact).cpu().numpy()
    best = res.best_score.double().cpu().numpy()
    maxg, meang = res.max_per_gen.cpu().numpy(), res.mean_per_gen.cpu().numpy()
    codes = res.best_code.float().cpu().numpy()
    means = res.final_mean.float().cpu().numpy()
    out = []
    for i, (_, key) in enumerate(todo):
        s = slice(i * R, (i + 1) * R)
        out.append(ConditionResult(key, images[s], best[s], intact[s], maxg[:, s], meang[:, s],
                                   codes[s], means[s], cancelled=res.cancelled))
    return out


def summary_table(results: Sequence[ConditionResult], class_names=None):
    """One row per condition: unit, sign, alpha, best/mean score over restarts, intact score."""
    import pandas as pd

    rows = []
    for r in results:
        k = r.key
        rows.append({
            "unit": k.unit,
            "class": class_names[k.unit] if class_names is not None else "",
            "sign": k.sign,
            "alpha": k.alpha,
            "best_score": float(np.nanmax(r.best_scores)),
            "mean_score": float(np.nanmean(r.best_scores)),
            "intact_score": float(np.nanmean(r.intact_scores)),
            "restarts": len(r.best_scores),
            "from_store": r.from_store,
        })
    return pd.DataFrame(rows)

