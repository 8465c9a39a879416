"""Reference path: one evolution at a time with pycma, behind the ask/tell loop of :mod:`evolve`.

:func:`run_pycma` runs ``cma.CMAEvolutionStrategy`` (pycma) with the popsize, mu, sigma0 and
covariance mode of a :class:`~signseg_core.optimize.evolve.CMAConfig`, driven by the same
ask-score-tell loop as :func:`~signseg_core.optimize.evolve.run_cmaes`, and returns the same
:class:`~signseg_core.optimize.ask_tell.EvolutionResult` (B = 1). The tests compare objective values
against it, and ``python -m signseg_core bench`` times it as the naive baseline.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from signseg_core.optimize.ask_tell import EvolutionResult, ScoreFn, drive_evolution
from signseg_core.optimize.evolve import CMAConfig

__all__ = ["run_pycma"]


class _PycmaOne:
    """One pycma evolution behind the ask/tell interface of ``evolve.BatchedCMAES`` (B = 1)."""

    def __init__(self, cma, x0: Tensor, config: CMAConfig, seed: int, options: dict):
        p = config.strategy_parameters(x0.shape[0])
        opts = {"popsize": p["popsize"], "CMA_mu": p["mu"], "seed": seed + 1, "verbose": -9,
                "CMA_diagonal": config.covariance != "full", "CMA_active": False,
                "CMA_on": 0 if config.covariance == "none" else 1, **options}
        self._es = cma.CMAEvolutionStrategy(x0.detach().cpu().double().numpy(), config.sigma0, opts)
        self._sign = 1.0 if config.maximize else -1.0
        self._x0, self.popsize, self.dim, self.batch_size = x0, p["popsize"], x0.shape[0], 1
        self._best_f, self.best_code, self._xs = -math.inf, x0.detach().clone()[None], None

    def ask(self) -> Tensor:
        self._xs = self._es.ask()
        return torch.as_tensor(np.asarray(self._xs), dtype=self._x0.dtype,
                               device=self._x0.device)[None]

    def tell(self, scores: Tensor) -> None:
        f = self._sign * scores.reshape(-1).to(torch.float64).cpu().numpy()
        f = np.where(np.isfinite(f), f, -np.inf)
        if f.max() > self._best_f:
            self._best_f = float(f.max())
            self.best_code = torch.as_tensor(self._xs[int(np.argmax(f))], dtype=self._x0.dtype,
                                             device=self._x0.device)[None]
        fin = f[np.isfinite(f)]
        worst = fin.min() - 1.0 - abs(fin.min()) if fin.size else 0.0
        self._es.tell(self._xs, list(-np.where(np.isfinite(f), f, worst)))  # pycma minimises

    @property
    def best_score(self) -> Tensor:
        return torch.tensor([self._sign * self._best_f], dtype=torch.float64,
                            device=self._x0.device)

    @property
    def mean(self) -> Tensor:
        return torch.as_tensor(self._es.mean, dtype=self._x0.dtype, device=self._x0.device)[None]

    @property
    def sigma(self) -> Tensor:
        return torch.tensor([self._es.sigma], dtype=self._x0.dtype, device=self._x0.device)


def run_pycma(score_fn: ScoreFn, x0: Tensor, *, config: CMAConfig, seed: int, generations: int,
              progress: Callable[[int, int, Tensor], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              options: dict | None = None) -> EvolutionResult:
    """Reference: ONE evolution with pycma's ``CMAEvolutionStrategy``, looped in Python.

    Same popsize, mu and sigma0 as :func:`~signseg_core.optimize.evolve.run_cmaes`, scored one
    population per call. ``covariance="diagonal"`` maps to ``CMA_diagonal=True``, ``"none"`` to that
    plus ``CMA_on=0`` (no learning; the linear-time sampler), and ``CMA_active=False`` matches the
    positive-only weights here; ``options`` overrides any pycma option. ``step_size_rule`` has no
    pycma counterpart (pycma's own CSA runs). pycma reads seed 0 as "seed from the clock", so
    ``seed`` s is passed as s + 1; pycma seeds NumPy's global generator, whose state is restored
    afterwards. Returns an :class:`~signseg_core.optimize.evolve.EvolutionResult` with B = 1.
    """
    if not isinstance(x0, Tensor) or x0.ndim != 1 or not x0.is_floating_point():
        raise ValueError(f"x0 must be a 1-D float tensor, got {x0!r:.80}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32 - 1:
        raise ValueError(f"seed must be an int in [0, 2**32 - 1), got {seed!r}")
    np_state = np.random.get_state()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"cma\b")  # matplotlib missing; its numerics
        import cma  # deferred: imported inside the filter that hides its warning at import
        try:
            es = _PycmaOne(cma, x0, config, seed, dict(options or {}))
            return drive_evolution(es, score_fn, generations, progress, should_stop)
        finally:
            np.random.set_state(np_state)
