"""Any unit, live: the condition on screen first, each condition stored as it finishes, a
best-so-far image while it runs, progress per scored batch and a stop between batches.

On a CPU the network is the whole cost, so :func:`run_live` evolves one condition at a time
(grouping them gained nothing on two cores: ``docs/benchmarks.md``), in the order a viewer needs
them (:func:`condition_order`: the condition on the screen, then outwards along the α strip).
On a GPU, where lockstep batching is the whole gain, every missing condition runs in one batch.
Either way a result is the same: each restart's seed comes from its condition's key alone
(:func:`~signseg_core.optimize.settings.evolution_seed`) and the batched optimiser is
batch-independent, so a condition's images do not depend on what ran beside it.

A run reports ``progress(done, total, message, preview)`` in images scored (``done`` grows after
every scored batch) and, every ``preview_every`` generations, a :class:`Preview`: the best image
so far of the condition running, decoded from the optimiser's best code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from signseg_core.conditions import Condition
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.results import ConditionResult, load_condition, save_condition
from signseg_core.optimize.visualize import default_batch_size, evolve_conditions
from signseg_core.store import ResultStore, default_store

#: ``progress(images_done, images_total, message, preview_or_None)``.
LiveProgress = Callable[..., None]


@dataclass(frozen=True)
class Preview:
    """The best image so far of one condition while it evolves.

    ``condition`` is its :attr:`Condition.key`; ``activation`` the ablated unit's best score so
    far (the objective), after ``generation`` of ``generations``; ``restart`` the restart it
    came from; ``generator`` the generator's name; ``iteration`` what a generation is called:
    ``"step"`` for a generator optimised by gradient ascent (maco).
    """

    condition: tuple
    generator: str
    image: np.ndarray
    activation: float
    restart: int
    generation: int
    generations: int
    iteration: str = "generation"


@dataclass(frozen=True)
class LiveRun:
    """What :func:`run_live` ends with: the request's results that exist (stored or finished
    now), in request order, and whether it was stopped before the end."""

    results: list[ConditionResult]
    cancelled: bool


def strip_position(condition: Condition) -> float:
    """Where a condition sits on the explorer's α strip: negative weights ablated at −α, the
    control at 0, positive weights at +α (the slider walks along this line)."""
    if condition.is_control:
        return 0.0
    return condition.alpha if condition.sign == "positive" else -condition.alpha


def condition_order(conditions: Sequence[Condition], first: Condition | None = None) -> list[int]:
    """Indices of ``conditions`` in the order to compute them: ``first`` (the one on screen),
    then by distance from it along the strip (:func:`strip_position`); ties keep the given order.
    Without ``first`` the given order is kept."""
    if first is None:
        return list(range(len(conditions)))
    origin = strip_position(first)
    return sorted(range(len(conditions)),
                  key=lambda i: round(abs(strip_position(conditions[i]) - origin), 9))


def run_live(request: VisualizeRequest, *, first: Condition | None = None,
             store: ResultStore | None | bool = None, batch_size: int | None = None,
             progress: LiveProgress | None = None, should_stop: Callable[[], bool] | None = None,
             lockstep: bool | None = None, preview_every: int = 2, group: int = 1,
             on_result: Callable[[ConditionResult], None] | None = None) -> LiveRun:
    """The request's results: stored ones read back, the rest evolved (``first`` and its strip
    neighbours first), each stored as soon as it finishes.

    Parameters
    ----------
    request : what to compute.
    first : the condition to compute first (the one on screen); None keeps the request's order.
    store : a ResultStore; None for the default store; False for none.
    batch_size : samples per backbone pass (default 512 on CUDA, 64 on a CPU).
    progress : ``progress(done, total, message, preview)``, images scored so far of those this
        run scores; called after every scored batch, with a :class:`Preview` every
        ``preview_every`` generations (and after the first).
    should_stop : asked before every scored batch; True ends the run: the condition running is
        dropped (never stored), those finished before stay stored.
    lockstep : evolve every missing condition in one batch (default: on CUDA only).
    group : otherwise, after ``first`` alone, the next conditions run ``group`` at a time
        (default one: on two cores groups of 4 gained nothing, 337 s for a strip against 323 s
        one at a time, ``docs/benchmarks.md``, and one at a time stores each neighbour soonest).
    on_result : called with each condition's result as it finishes (after it is stored), e.g. to
        send it from a cluster worker to the process that stores it.
    """
    resolved = default_store() if store is None else (None if store is False else store)
    keys = request.keys
    found = {k: load_condition(resolved, k) for k in keys} if resolved is not None else {}
    missing = [i for i, k in enumerate(keys) if found.get(k) is None]
    order = condition_order([request.conditions[i] for i in missing], first)
    todo = [(request.conditions[missing[j]], keys[missing[j]]) for j in order]
    if lockstep is None:
        lockstep = request.model.device.type == "cuda"
    groups = [todo] if lockstep and todo else [todo[:1]] + [
        todo[i:i + group] for i in range(1, len(todo), group)]
    groups = [g for g in groups if g]
    counter = _Counter(len(todo) * request.images_per_condition, progress)
    cancelled = False
    for group in groups:
        if should_stop is not None and should_stop():
            cancelled = True
            break
        results = evolve_conditions(
            request.model, request.generator, group, request.settings, request.precision,
            batch_size or default_batch_size(request.model.device), None, should_stop,
            on_batch=counter.add, observe=_previewer(group[0][0], request, counter, preview_every))
        if any(r.cancelled for r in results):
            cancelled = True
            break
        for result in results:
            found[result.key] = result
            if resolved is not None:
                save_condition(resolved, result)
            if on_result is not None:
                on_result(result)
        counter.report(f"{len(found)}/{len(keys)} conditions stored")
    return LiveRun([found[k] for k in keys if found.get(k) is not None], cancelled)


class _Counter:
    """Images scored so far, reported after every batch."""

    def __init__(self, total: int, progress: LiveProgress | None):
        self.done, self.total, self.progress, self.message = 0, total, progress, ""

    def add(self, n: int) -> None:
        self.done = min(self.done + n, self.total)
        self.report(self.message)

    def report(self, message: str, preview: Preview | None = None) -> None:
        self.message = message
        if self.progress is not None:
            self.progress(self.done, self.total, message, preview)


def _previewer(condition: Condition, request: VisualizeRequest, counter: _Counter, every: int):
    """``observe`` for :func:`evolve_conditions`: every ``every`` generations (and after the
    first) decode the best code among the restarts of the group's first condition."""
    restarts, generations = request.settings.restarts, request.settings.generations
    words = condition.key[1] if not condition.is_control else "control"
    iteration = "step" if getattr(request.generator, "method", "") == "gradient" else "generation"

    def observe(done: int, es, images_of) -> None:
        if done != 1 and done % every and done != generations:
            return
        best = es.best_score[:restarts]
        i = int(torch.argmax(torch.nan_to_num(best, nan=-torch.inf)))
        preview = Preview(condition.key, request.generator.name,
                          images_of(es.best_code[i:i + 1])[0], float(best[i]), i, done,
                          generations, iteration)
        counter.report(f"{words} α = {condition.alpha:.1f}: {iteration} {done}/{generations}",
                       preview)

    return observe
