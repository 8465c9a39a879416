"""The ask-score-tell loop that drives a batch of evolutions, and the record it returns.

:func:`drive_evolution` runs any optimiser with the ask/tell interface of
:class:`~signseg_core.optimize.evolve.BatchedCMAES` (``ask() -> (B, popsize, d)``,
``tell(scores (B, popsize))``, ``best_score``, ``best_code``, ``mean``, ``sigma``): the batched
engine (:func:`~signseg_core.optimize.evolve.run_cmaes`) and the pycma reference
(:func:`~signseg_core.optimize.evolve_pycma.run_pycma`) share it, so both record the same history
and stop the same way when asked to.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["EvolutionResult", "EvolutionStopped", "ScoreFn", "drive_evolution"]

#: Codes ``(B * popsize, d)`` → scores ``(B * popsize,)``, rows evolution-major.
ScoreFn = Callable[[Tensor], Tensor]


class EvolutionStopped(Exception):
    """Raised by a score function that was asked to stop part-way through a generation (it
    checks between scored batches, so a cancel on a CPU does not wait for a whole generation).
    :func:`drive_evolution` ends the run as cancelled; the interrupted generation is not told."""


@dataclass(frozen=True)
class EvolutionResult:
    """What a run returns; all tensors on the device of ``x0``.

    Attributes
    ----------
    best_code : Tensor (B, d)
    best_score : Tensor (B,), float64
    max_per_gen, mean_per_gen : Tensor (G, B)
        Largest and mean finite score of each generation (NaN where none was finite).
    best_so_far : Tensor (G, B)
        Best score up to each generation, in the optimisation's sense (max or min).
    final_mean : Tensor (B, d); final_sigma : Tensor (B,)
    generations_run : int; cancelled : bool
    """

    best_code: Tensor
    best_score: Tensor
    max_per_gen: Tensor
    mean_per_gen: Tensor
    best_so_far: Tensor
    final_mean: Tensor
    final_sigma: Tensor
    generations_run: int
    cancelled: bool


def _generation_stats(scores: Tensor) -> tuple[Tensor, Tensor]:
    """Max and mean over finite entries of scores (B, lambda) -> two (B,) float64, NaN if none."""
    s = scores.detach().to(torch.float64)
    finite = torch.isfinite(s)
    count = finite.sum(1)
    top = torch.where(finite, s, -math.inf).amax(1)
    mean = torch.where(finite, s, 0.0).sum(1) / count
    nan = torch.full_like(top, math.nan)
    return torch.where(count > 0, top, nan), torch.where(count > 0, mean, nan)


def _check_generations(generations) -> None:
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 0:
        raise ValueError(f"generations must be an int >= 0, got {generations!r}")


def drive_evolution(es, score_fn: ScoreFn, generations: int,
                    progress: Callable[[int, int, Tensor], None] | None,
                    should_stop: Callable[[], bool] | None,
                    observe: Callable[[int, object], None] | None = None) -> EvolutionResult:
    """Ask, score and tell ``es`` for ``generations`` steps, recording every generation.

    ``score_fn`` scores a whole generation in one call and must return ``(B * popsize,)``, or
    raise :class:`EvolutionStopped`; ``progress(done, total, best_score)`` is called after every
    generation, ``should_stop()`` asked before every one (True, or a stopped score function, ends
    the run with ``cancelled=True``), and ``observe(done, es)`` after every generation lets a
    caller look at the optimiser (e.g. decode ``es.best_code`` as a live preview). Shared by
    :func:`~signseg_core.optimize.evolve.run_cmaes` and
    :func:`~signseg_core.optimize.evolve_pycma.run_pycma`.
    """
    _check_generations(generations)
    B, lam, d = es.batch_size, es.popsize, es.dim
    history: tuple[list, list, list] = ([], [], [])
    cancelled = False
    for gen in range(generations):
        if should_stop is not None and should_stop():
            cancelled = True
            break
        try:
            scores = score_fn(es.ask().reshape(B * lam, d))
        except EvolutionStopped:
            cancelled = True
            break
        if not isinstance(scores, Tensor) or scores.shape != (B * lam,):
            got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise ValueError(f"score_fn must return a tensor of shape {(B * lam,)}, got {got}")
        scores = scores.detach().reshape(B, lam)
        es.tell(scores)
        for h, v in zip(history, (*_generation_stats(scores), es.best_score)):
            h.append(v)
        if progress is not None:
            progress(gen + 1, generations, es.best_score)
        if observe is not None:
            observe(gen + 1, es)
    stack = [torch.stack(h) if h else torch.empty(0, B, dtype=torch.float64) for h in history]
    stack = [h.to(es.mean.device) for h in stack]
    return EvolutionResult(es.best_code, es.best_score, *stack, es.mean, es.sigma, len(history[0]),
                           cancelled)
