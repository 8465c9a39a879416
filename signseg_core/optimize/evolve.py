"""Batched evolution strategies: thousands of independent evolutions advanced in lockstep.

What runs. Each of ``B`` evolutions is a (mu/mu_w, lambda)-ES with cumulative step-size adaptation
(CSA) as in Hansen, "The CMA Evolution Strategy: A Tutorial" (arXiv:1604.00772, Table 1), with the
population rule of the Ponce lab's CholeskyCMAES (Wang & Ponce, "High-performance evolutionary
algorithms for online neuron control", GECCO 2022): ``lambda = 4 + floor(3 log2 d)`` (40 at
d = 4096), ``mu = lambda // 2`` and weights ``w_i ~ ln(mu + 1/2) - ln i``, summing to 1. The
covariance decides whether it is CMA-ES at all (:func:`~signseg_core.optimize.settings.
describe_optimizer` words it): ``"none"``, the default, adapts no covariance: an *isotropic* ES
with CSA, sigma only, which is what is practical at d = 4096 with B = 4620 and what the Ponce code
amounts to there (its rank-one rate 2 / (d + sqrt 2)^2 is ~1e-7); ``"diagonal"`` is sep-CMA-ES
(Ros & Hansen 2008, O(d) per sample, pycma's separable rates); ``"full"`` is CMA-ES proper (the
tutorial's rank-one + rank-mu update; O(B d^2) memory, d <~ 500; its eigendecomposition is redone
every ``eigen_interval`` generations, 1 by default, the tutorial's B.2 allowing up to
:func:`lazy_eigen_interval`). ``ask()`` returns codes ``(B, lambda, d)``; ``tell(scores (B,
lambda))`` updates every evolution with tensor operations only: no loop over evolutions, no host
round-trip, no branch on values. docs/optimizer.md measures the three at d = 4096.

What differs from pycma (``cma.CMAEvolutionStrategy``, run for reference by
:func:`signseg_core.optimize.evolve_pycma.run_pycma`): pycma uses ``4 + floor(3 ln d)`` and active
(negative) weights; it adds restarts, termination tests, bounds, and raises sigma on flat fitness.
Here there are only positive weights; ``step_size_rule="wang_ponce"`` swaps in the Ponce code's
``c_sigma = sqrt(mu_eff) / (sqrt(mu_eff) + sqrt(d))`` (0.050 instead of 0.0032 at d = 4096, so
sigma adapts within a ~100-generation budget); scores that are NaN or +-inf rank last; an evolution
whose scores are all equal (a unit made flat by ablation) or all non-finite is left unchanged. The
noise is a counter-based hash of (seed, generation, sample, coordinate) turned normal by Box-Muller,
so an evolution's trajectory depends on its own seed only, never on B or its batch neighbours:
bitwise on CPU and CUDA for "none" and "diagonal" (for "full" in float64; in float32 the batched
matrix products round differently per batch size). CPU and CUDA draw the same integers; the codes
agree to ~5e-7 (float32). On an H100, B = 4620 at d = 4096 takes ~0.14 s per ask and ~0.08 s per
tell (7 GB peak, scoring excluded).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from signseg_core.optimize.ask_tell import EvolutionResult, ScoreFn, drive_evolution

__all__ = ["COVARIANCES", "BatchedCMAES", "CMAConfig", "lazy_eigen_interval", "run_cmaes"]

COVARIANCES = ("none", "diagonal", "full")
_STEP_RULES = ("hansen", "wang_ponce")
_MASK = 0xFFFFFFFF
_CHUNK = 1 << 25  # hash at most this many int64 words at once (256 MiB)


def _mix32(x):
    """Bijective 32-bit integer hash ("lowbias32", C. Wellons) of an int or an int64 tensor.

    Both multipliers are below 2**31, so every product of a 32-bit word stays below 2**63: exact
    in int64 on every device. Tensors are mixed in place (callers pass fresh tensors).
    """
    x ^= x >> 16
    x *= 0x21F0AAAD
    x &= _MASK
    x ^= x >> 15
    x *= 0x735A2D97
    x &= _MASK
    x ^= x >> 15
    return x


@dataclass(frozen=True)
class CMAConfig:
    """Options of a batched evolution (one config is shared by every evolution of a batch).

    Parameters
    ----------
    popsize : int >= 2 or None
        Samples per generation, lambda. None: ``4 + floor(3 log2 d)`` (Wang & Ponce 2022).
    sigma0 : float > 0
        Initial step size, in code units (the paper: 3.0 for DeePSiM, 0.2 for BigGAN).
    mu : int in [1, popsize] or None
        Parents kept for recombination. None: ``popsize // 2``.
    covariance : {"none", "diagonal", "full"}
        "none": no covariance adaptation, an isotropic ES (not CMA-ES); "diagonal": sep-CMA-ES;
        "full": CMA-ES. See the module docstring.
    step_size_rule : {"hansen", "wang_ponce"}
        CSA learning rate: Hansen's tutorial, or the Ponce lab's faster one.
    maximize : bool
        True maximises the scores (activations); False minimises them (test functions).
    """

    popsize: int | None = None
    sigma0: float = 1.0
    mu: int | None = None
    covariance: str = "none"
    step_size_rule: str = "hansen"
    maximize: bool = True

    def __post_init__(self):
        for name, low in (("popsize", 2), ("mu", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < low):
                raise ValueError(f"{name} must be None or an int >= {low}, got {value!r}")
        if self.mu is not None and self.popsize is not None and self.mu > self.popsize:
            raise ValueError(f"mu={self.mu} must not exceed popsize={self.popsize}")
        if isinstance(self.sigma0, bool) or not isinstance(self.sigma0, (int, float)) \
                or not math.isfinite(self.sigma0) or self.sigma0 <= 0:
            raise ValueError(f"sigma0 must be a finite number > 0, got {self.sigma0!r}")
        if self.covariance not in COVARIANCES:
            raise ValueError(f"covariance {self.covariance!r}; choose from {COVARIANCES}")
        if self.step_size_rule not in _STEP_RULES:
            raise ValueError(f"step_size_rule {self.step_size_rule!r}; choose from {_STEP_RULES}")
        if not isinstance(self.maximize, bool):
            raise ValueError(f"maximize must be True or False, got {self.maximize!r}")

    def to_dict(self) -> dict:
        """Plain dict of the options, for cache keys and checkpoints."""
        return asdict(self)

    def strategy_parameters(self, d: int) -> dict:
        """Resolved constants for dimension ``d``: popsize, mu, weights, mueff, learning rates."""
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"dimension d must be an int >= 1, got {d!r}")
        lam = self.popsize if self.popsize is not None else 4 + math.floor(3 * math.log2(d))
        mu = self.mu if self.mu is not None else lam // 2
        if mu > lam:
            raise ValueError(f"mu={mu} must not exceed popsize={lam}")
        raw = [math.log(mu + 0.5) - math.log(i) for i in range(1, mu + 1)]
        weights = tuple(w / sum(raw) for w in raw)
        mueff = 1.0 / sum(w * w for w in weights)
        if self.step_size_rule == "hansen":
            cs = (mueff + 2) / (d + mueff + 5)
        else:
            cs = math.sqrt(mueff) / (math.sqrt(mueff) + math.sqrt(d))
        ds = 1 + 2 * max(0.0, math.sqrt((mueff - 1) / (d + 1)) - 1) + cs
        if self.covariance == "diagonal":  # pycma's separable rates (CMA_diagonal=True)
            cc = (1 + 1 / d + mueff / d) / (math.sqrt(d) + 1 / d + 2 * mueff / d)
            c1 = 1 / (d + 2 * math.sqrt(d) + mueff / d)
            cmu = min(1 - c1, (0.25 + mueff + 1 / mueff - 2) / (d + 4 * math.sqrt(d) + mueff / 2))
        elif self.covariance == "full":  # Hansen's tutorial, Table 1
            cc = (4 + mueff / d) / (d + 4 + 2 * mueff / d)
            c1 = 2 / ((d + 1.3) ** 2 + mueff)
            cmu = min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((d + 2) ** 2 + mueff))
        else:
            cc = c1 = cmu = 0.0
        chi_n = math.sqrt(d) * (1 - 1 / (4 * d) + 1 / (21 * d * d))
        return dict(popsize=lam, mu=mu, weights=weights, mueff=mueff, c_sigma=cs, d_sigma=ds,
                    c_c=cc, c_1=c1, c_mu=cmu, chi_n=chi_n)


def lazy_eigen_interval(config: CMAConfig, d: int) -> int:
    """Generations the eigendecomposition of a full covariance may wait, by Hansen's tutorial
    (B.2): ``max(1, floor(1 / (10 d (c_1 + c_mu))))``; 1 for "none" and "diagonal".

    At d = 4096 it is 103 for lambda = 8 and 19 for lambda = 40: C moves so slowly there that
    the tutorial postpones the O(d^3) decomposition that long to keep O(d^2) per generation.
    """
    if config.covariance != "full":
        return 1
    p = config.strategy_parameters(d)
    return max(1, math.floor(1 / (10 * d * (p["c_1"] + p["c_mu"]))))


def _seed_tensor(seeds, device) -> Tensor:
    """Seeds as an int64 tensor (B,) on ``device``, each in [0, 2**63)."""
    try:
        s = torch.as_tensor(seeds, dtype=torch.int64) if isinstance(seeds, Tensor) \
            else torch.tensor(list(seeds), dtype=torch.int64)
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        raise ValueError(f"seeds must be ints in [0, 2**63), got {seeds!r}") from err
    if s.ndim != 1 or s.numel() == 0 or bool((s < 0).any()):
        raise ValueError(f"seeds must be a non-empty 1-D sequence of ints >= 0, got {seeds!r}")
    return s.to(device)


class BatchedCMAES:
    """B independent evolutions in lockstep (ask/tell): isotropic ES, sep-CMA-ES or CMA-ES.

    Parameters
    ----------
    x0 : Tensor (B, d) or (d,), float32 or float64
        Initial means; a 1-D ``x0`` is shared by all ``len(seeds)`` evolutions. Sets device, dtype.
    config : CMAConfig
    seeds : sequence of int or Tensor (B,), each in [0, 2**63)
        One seed per evolution; evolution ``b`` depends on ``seeds[b]`` alone.
    eigen_interval : int >= 1
        ``"full"`` only: redo the eigendecomposition of C every this many generations (1, the
        default: every one; at most :func:`lazy_eigen_interval` loses nothing, the tutorial says).
        Not in ``config`` (nor any store key: stored runs use 1); a resumed run refreshes at once.
    """

    def __init__(self, x0: Tensor, *, config: CMAConfig, seeds: Sequence[int] | Tensor,
                 eigen_interval: int = 1):
        if not isinstance(x0, Tensor) or x0.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"x0 must be a float32 or float64 tensor, got {x0!r:.80}")
        if x0.ndim not in (1, 2) or x0.shape[-1] == 0:
            raise ValueError(f"x0 must have shape (B, d) or (d,), got {tuple(x0.shape)}")
        if not isinstance(config, CMAConfig):
            raise ValueError(f"config must be a CMAConfig, got {type(config).__name__}")
        if isinstance(eigen_interval, bool) or not isinstance(eigen_interval, int) \
                or eigen_interval < 1:
            raise ValueError(f"eigen_interval must be an int >= 1, got {eigen_interval!r}")
        self._eigen_interval = eigen_interval
        self._seeds = _seed_tensor(seeds, x0.device)
        B, d = len(self._seeds), x0.shape[-1]
        if x0.ndim == 2 and x0.shape[0] != B:
            raise ValueError(f"x0 has {x0.shape[0]} rows but {B} seeds were given")
        if not bool(torch.isfinite(x0).all()):
            raise ValueError("x0 contains NaN or inf")
        self._config, self._d, self._dtype = config, d, x0.dtype
        p = self._p = config.strategy_parameters(d)
        dev, dt = x0.device, x0.dtype
        self._weights = torch.tensor(p["weights"], dtype=dt, device=dev)
        self._mean = x0.detach().expand(B, d).clone()
        self._sigma = torch.full((B,), float(config.sigma0), dtype=dt, device=dev)
        self._ps = torch.zeros(B, d, dtype=dt, device=dev)
        self._pc = torch.zeros(B, d, dtype=dt, device=dev)
        self._cdiag = torch.ones(B, d, dtype=dt, device=dev)  # covariance="diagonal"
        eye = torch.eye(d, dtype=dt, device=dev) if config.covariance == "full" else None
        self._cov = eye.expand(B, d, d).clone() if eye is not None else None
        self._refresh_shape()
        self._best_f = torch.full((B,), -math.inf, dtype=torch.float64, device=dev)
        self._best_code = self._mean.clone()
        self._generation = 0
        # Seed keys: a bijection of the seed for seeds < 2**32.
        self._keys = _mix32(_mix32((self._seeds & _MASK) ^ 0x2545F491) ^ (self._seeds >> 32))
        dp = d + d % 2  # Box-Muller needs an even count per sample
        k = _mix32(torch.arange(dp, device=dev) ^ 0x68E31DA4)
        j = _mix32(torch.arange(p["popsize"], device=dev) ^ 0xB5297A4D)
        self._table = _mix32(k[None, :] ^ j[:, None])  # (lambda, dp): hash of (sample, coordinate)

    # ----------------------------------------------------------------------------- noise & shape
    def _normals(self, rows: Tensor) -> Tensor:
        """Standard normals (B, R, d) of samples ``rows`` (B, R) of this generation."""
        B, R = rows.shape
        d, dp = self._d, self._table.shape[1]
        g = _mix32((self._generation & _MASK) ^ 0x1B873593) ^ (self._generation >> 32)
        keys = _mix32(_mix32(self._keys ^ g) ^ 0x3C6EF372)
        out = torch.empty(B, R, d, dtype=self._dtype, device=rows.device)
        step = max(1, _CHUNK // (R * dp))
        for b0 in range(0, B, step):  # blocks bound the memory; not a loop over evolutions
            h = self._table[rows[b0:b0 + step]]
            h ^= keys[b0:b0 + step, None, None]
            h = _mix32(_mix32(h) ^ 0x9E3779B9)
            u = ((h >> 8).to(self._dtype) + 0.5) * 2.0 ** -24  # in (0, 1), never 0
            r = torch.sqrt(-2.0 * torch.log(u[..., : dp // 2]))
            theta = (2 * math.pi) * u[..., dp // 2:]
            out[b0:b0 + step] = torch.cat([r * torch.cos(theta), r * torch.sin(theta)], -1)[..., :d]
        return out

    def _shape(self, z: Tensor) -> Tensor:
        """Map normals z (B, R, d) to steps y ~ N(0, C) (B, R, d)."""
        if self._config.covariance == "diagonal":
            return z * self._cdiag.sqrt()[:, None, :]
        if self._config.covariance == "full":
            return (z * self._eigsqrt[:, None, :]) @ self._eigvec.transpose(1, 2)
        return z

    def _refresh_shape(self):
        if self._cov is not None:
            vals, self._eigvec = torch.linalg.eigh(self._cov)
            self._eigsqrt = vals.clamp(min=0).sqrt()

    # --------------------------------------------------------------------------------- ask / tell
    def ask(self) -> Tensor:
        """Codes to score this generation: Tensor (B, popsize, d). Pure: asking twice repeats."""
        B = len(self._seeds)
        rows = torch.arange(self.popsize, device=self._mean.device).expand(B, -1)
        y = self._shape(self._normals(rows))
        return y.mul_(self._sigma[:, None, None]).add_(self._mean[:, None, :])

    def tell(self, scores: Tensor) -> None:
        """Update every evolution from the scores (B, popsize) of the codes of :meth:`ask`.

        Non-finite scores rank last (stable by sample index on ties). An evolution whose scores are
        all equal or all non-finite keeps its mean, sigma and paths; its best is still recorded.
        """
        B, lam, d, p, cfg = len(self._seeds), self.popsize, self._d, self._p, self._config
        if not isinstance(scores, Tensor) or tuple(scores.shape) != (B, lam):
            shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise ValueError(f"scores must be a tensor of shape {(B, lam)}, got {shape}")
        s = scores.detach().to(self._mean.device)
        s = s if s.is_floating_point() else s.to(torch.float64)
        f = torch.where(torch.isfinite(s), s if cfg.maximize else -s, -math.inf)
        order = torch.argsort(f, dim=1, descending=True, stable=True)
        sel = order[:, : p["mu"]]
        f_top = f.gather(1, sel[:, :1]).squeeze(1)
        moves = f_top > f.amin(1)  # False when all scores are equal or all non-finite

        z = self._normals(sel)
        y = self._shape(z)
        w = self._weights[None, :, None]
        zw, yw = (w * z).sum(1), (w * y).sum(1)
        improved = f_top.to(torch.float64) > self._best_f
        top_code = self._mean + self._sigma[:, None] * y[:, 0]
        self._best_code = torch.where(improved[:, None], top_code, self._best_code)
        self._best_f = torch.where(improved, f_top.to(torch.float64), self._best_f)

        cs, mueff = p["c_sigma"], p["mueff"]
        mean = self._mean + self._sigma[:, None] * yw
        if self._cov is not None:  # C^(-1/2) y_w = B z_w
            zw = (self._eigvec * zw[:, None, :]).sum(2)  # not einsum: B = 1 takes another kernel
        ps = (1 - cs) * self._ps + math.sqrt(cs * (2 - cs) * mueff) * zw
        norm_ps = ps.double().square().sum(1).sqrt()  # float64: the same rounding at every B
        step = torch.exp((cs / p["d_sigma"]) * (norm_ps / p["chi_n"] - 1))
        sigma = (self._sigma.double() * step).to(self._dtype)
        ok = moves & torch.isfinite(mean).all(1) & torch.isfinite(sigma) & (sigma > 0)
        if cfg.covariance != "none":
            cc, c1, cmu = p["c_c"], p["c_1"], p["c_mu"]
            bias = math.sqrt(1 - (1 - cs) ** (2 * (self._generation + 1)))
            hsig = (norm_ps / bias < (1.4 + 2 / (d + 1)) * p["chi_n"]).to(self._dtype)
            pc = (1 - cc) * self._pc + hsig[:, None] * math.sqrt(cc * (2 - cc) * mueff) * yw
            decay = 1 - c1 - cmu + (1 - hsig) * c1 * cc * (2 - cc)
            if self._cov is None:
                cdiag = decay[:, None] * self._cdiag + c1 * pc**2 + cmu * (w * y**2).sum(1)
                ok &= torch.isfinite(cdiag).all(1) & (cdiag > 0).all(1)
                self._cdiag = torch.where(ok[:, None], cdiag, self._cdiag)
            else:
                rank_mu = torch.einsum("bmi,bmj->bij", w * y, y)
                cov = decay[:, None, None] * self._cov + c1 * pc[:, :, None] * pc[:, None, :]
                cov = cov + cmu * rank_mu
                ok &= torch.isfinite(cov).all(2).all(1)
                self._cov = torch.where(ok[:, None, None], (cov + cov.transpose(1, 2)) / 2,
                                        self._cov)
            self._pc = torch.where(ok[:, None], pc, self._pc)
        self._mean = torch.where(ok[:, None], mean, self._mean)
        self._ps = torch.where(ok[:, None], ps, self._ps)
        self._sigma = torch.where(ok, sigma, self._sigma)
        self._generation += 1
        if self._generation % self._eigen_interval == 0:
            self._refresh_shape()

    # --------------------------------------------------------------------------------- accessors
    config = property(lambda self: self._config, doc="The :class:`CMAConfig`.")
    popsize = property(lambda self: self._p["popsize"], doc="Samples per generation, lambda.")
    mu = property(lambda self: self._p["mu"], doc="Parents recombined per generation.")
    dim = property(lambda self: self._d, doc="Code dimension d.")
    batch_size = property(lambda self: len(self._seeds), doc="Number of evolutions B.")
    generation = property(lambda self: self._generation, doc="Completed ``tell`` calls.")
    mean = property(lambda self: self._mean.clone(), doc="Current means, Tensor (B, d).")
    sigma = property(lambda self: self._sigma.clone(), doc="Step sizes, Tensor (B,) > 0.")
    best_code = property(lambda self: self._best_code.clone(),
                         doc="Code of :attr:`best_score`, (B, d); the initial mean before any.")

    @property
    def best_score(self) -> Tensor:
        """Best finite score seen, float64 (B,); -inf (maximising) or +inf before any."""
        return self._best_f.clone() if self._config.maximize else -self._best_f

    _STATE = ("seeds", "mean", "sigma", "ps", "pc", "cdiag", "cov", "best_f", "best_code")

    def state_dict(self) -> dict:
        """Checkpoint: config, generation and state tensors (loads with ``weights_only=True``)."""
        state = {name: getattr(self, "_" + name) for name in self._STATE}
        state = {k: v.detach().clone() for k, v in state.items() if v is not None}
        return dict(state, config=self._config.to_dict(), generation=self._generation)

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict` of an optimiser with the same config, seeds and shape."""
        if state.get("config") != self._config.to_dict():
            raise ValueError(f"checkpoint config {state.get('config')} != {self._config.to_dict()}")
        seeds = state.get("seeds")
        if not isinstance(seeds, Tensor) or not torch.equal(seeds.to(self._seeds), self._seeds):
            raise ValueError("checkpoint seeds differ from this optimiser's seeds")
        for name in self._STATE[1:]:
            mine = getattr(self, "_" + name)
            if mine is None:
                continue
            if name not in state or tuple(state[name].shape) != tuple(mine.shape):
                raise ValueError(f"checkpoint {name!r} missing or not of shape {tuple(mine.shape)}")
            setattr(self, "_" + name, state[name].to(device=mine.device, dtype=mine.dtype).clone())
        self._generation = int(state["generation"])
        self._refresh_shape()


def run_cmaes(score_fn: ScoreFn, x0: Tensor, *, config: CMAConfig,
              seeds: Sequence[int] | Tensor, generations: int,
              progress: Callable[[int, int, Tensor], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              observe: Callable[[int, BatchedCMAES], None] | None = None) -> EvolutionResult:
    """Run B evolutions for ``generations`` steps, scoring each whole generation in one call.

    Parameters
    ----------
    score_fn : callable, codes (B * popsize, d) -> scores (B * popsize,)
        Rows are evolution-major: rows ``b * popsize ... (b + 1) * popsize - 1`` are evolution b.
        At scale (B * popsize ~ 2e5 images) it should score in chunks of its own choosing.
    x0, config, seeds
        As in :class:`BatchedCMAES`.
    generations : int >= 0
    progress : callable(done, total, best_score (B,)), optional
        Called after every generation.
    should_stop : callable() -> bool, optional
        Asked before every generation; True ends the run early with ``cancelled=True`` (as does
        a ``score_fn`` raising :class:`~signseg_core.optimize.ask_tell.EvolutionStopped`).
    observe : callable(done, es), optional
        Called after every generation with the optimiser itself (live previews).
    """
    es = BatchedCMAES(x0, config=config, seeds=seeds)
    return drive_evolution(es, score_fn, generations, progress, should_stop, observe)
