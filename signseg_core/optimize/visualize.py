"""Preferred images per ablation condition: batched evolution strategies over a generator's
codes (isotropic with step-size adaptation by default; see
:func:`~signseg_core.optimize.settings.describe_optimizer`).

Every evolution of a request (conditions × restarts) advances in lockstep: per generation, one
generator pass and one backbone pass over all of their samples (in memory-sized chunks), and the
per-condition ablated readout rows applied as one batched dot product. Results are stored per
condition, keyed by everything that determines them, so a later request for any subset is read
back instead of recomputed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from signseg_core.ablation import ablated_readout
from signseg_core.conditions import Condition
from signseg_core.models.zoo import ZooModel
from signseg_core.optimize.ask_tell import EvolutionStopped
from signseg_core.optimize.evolve import run_cmaes
from signseg_core.optimize.readout_gradient import ascend_conditions
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.results import (
    ConditionResult,
    load_condition,
    save_condition,
    to_uint8,
)
from signseg_core.optimize.settings import VisualizeSettings, evolution_seed
from signseg_core.store import ResultStore, default_store

_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


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
                popsize: int, *, batch_size: int, precision: str, compile: bool = False,
                on_batch: Callable[[int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> Callable[[Tensor], Tensor]:
    """codes (B * popsize, d), evolution-major → each sample's score under its own condition.

    Samples are scored ``batch_size`` at a time; with ``compile=True`` a short last chunk is
    padded to ``batch_size`` so that one compiled graph serves every chunk. ``on_batch(n)`` is
    told after each chunk how many samples it scored (progress within a generation), and
    ``should_stop()`` is asked before each chunk: True raises
    :class:`~signseg_core.optimize.ask_tell.EvolutionStopped`, so a cancel waits for one chunk,
    not one generation.
    """
    device = model.device
    row_cond = evo_cond.repeat_interleave(popsize)  # (B * popsize,)
    half = precision in _HALF and device.type == "cuda"
    features = _chunk_features(model, generator, half=half, compile=compile)

    def score(codes: Tensor) -> Tensor:
        out = torch.empty(codes.shape[0], device=device, dtype=torch.float32)
        for start in range(0, codes.shape[0], batch_size):
            if should_stop is not None and should_stop():
                raise EvolutionStopped
            stop = min(start + batch_size, codes.shape[0])
            chunk = codes[start:stop]
            if compile and stop - start < batch_size:
                chunk = torch.cat([chunk, chunk[-1:].expand(batch_size - (stop - start), -1)])
            with _autocast(device, precision):
                feats = features(chunk)[: stop - start]
            c = row_cond[start:stop]
            out[start:stop] = (feats.float() * rows[c]).sum(1) + biases[c]
            if on_batch is not None:
                on_batch(stop - start)
        return out

    return score


def visualize(model: ZooModel, conditions: Sequence[Condition], *,
              settings: VisualizeSettings = VisualizeSettings(), generator=None,
              **options) -> list[ConditionResult]:
    """Preferred images for every condition (controls de-duplicated), from the store or computed:
    :func:`run_request` of :meth:`VisualizeRequest.build(model, conditions, settings, generator)
    <signseg_core.optimize.request.VisualizeRequest.build>`.

    ``generator`` defaults to ``make_generator(settings.generator)`` on the model's device;
    ``options`` (store, batch_size, progress, should_stop, compile) are :func:`run_request`'s.
    Returns one ConditionResult per unique condition, in the order first given.
    """
    request = VisualizeRequest.build(model, conditions, settings, generator=generator)
    return run_request(request, **options)


def run_request(
    request: VisualizeRequest,
    *,
    store: ResultStore | None | bool = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    compile: bool = False,
) -> list[ConditionResult]:
    """The request's results: stored ones read back, the rest evolved in lockstep and stored.

    Parameters
    ----------
    request : what to compute (model, generator, conditions, settings).
    store : a ResultStore; None for the default store under the cache dir; False for none.
    batch_size : samples scored per backbone pass (default 512 on CUDA, 64 on a CPU).
    progress : called as ``progress(generations_done, generations_total)``.
    should_stop : asked every generation; True cancels (nothing is stored, results are marked).
    compile : score through ``torch.compile`` (worth it for long CUDA runs; the first chunk pays
        the compile time). Not part of the key: it changes scores only by rounding.

    Returns
    -------
    One ConditionResult per condition of the request, in its order.
    """
    if store is None:
        store = default_store()
    elif store is False:
        store = None
    keys = request.keys
    found = {k: load_condition(store, k) for k in keys} if store is not None else {}
    todo = [(c, k) for c, k in zip(request.conditions, keys) if found.get(k) is None]
    settings = request.settings
    if todo:
        batch = batch_size or default_batch_size(request.model.device)
        for result in evolve_conditions(request.model, request.generator, todo, settings,
                                        request.precision, batch, progress, should_stop,
                                        compile):
            found[result.key] = result
            if store is not None and not result.cancelled:
                save_condition(store, result)
    elif progress is not None:
        progress(settings.generations, settings.generations)
    return [found[k] for k in keys]


def evolve_conditions(model, generator, todo, settings, precision, batch_size, progress,
                      should_stop, compile=False, *, on_batch=None, observe=None):
    """Evolve ``todo`` (pairs of Condition and ConditionKey) in lockstep; one ConditionResult
    each, in order (marked ``cancelled`` when stopped). ``progress(done, total)`` per
    generation, ``on_batch(n)`` per scored chunk, ``observe(done, es, images_of)`` after each
    generation, where ``images_of(codes)`` decodes codes to uint8 images (live previews).
    A generator whose ``method`` is ``"gradient"`` (maco) runs
    :func:`~signseg_core.optimize.readout_gradient.ascend_conditions` instead, with these
    arguments (generations = steps)."""
    if getattr(generator, "method", "cmaes") == "gradient":
        return ascend_conditions(model, generator, todo, settings, precision, batch_size,
                                 progress, should_stop, compile, on_batch=on_batch,
                                 observe=observe)
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
                        batch_size=batch_size, precision=precision, compile=compile,
                        on_batch=on_batch, should_stop=should_stop)
    tick = None if progress is None else (lambda done, total, _best: progress(done, total))

    def images_of(codes: Tensor) -> np.ndarray:
        with _autocast(device, precision):
            return to_uint8(generator(codes.to(device, x0.dtype)).float())

    look = None if observe is None else (lambda done, es: observe(done, es, images_of))
    with torch.inference_mode():
        res = run_cmaes(score, x0, config=config, seeds=seeds, generations=settings.generations,
                        progress=tick, should_stop=should_stop, observe=look)
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


