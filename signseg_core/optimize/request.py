"""The request noun: one run of preferred images, built once and passed from page or command line
to job to store.

A :class:`VisualizeRequest` holds a model, a built generator, the conditions to evolve (duplicates
and the second control dropped, see :func:`~signseg_core.conditions.unique_conditions`) and the
:class:`~signseg_core.optimize.settings.VisualizeSettings`. From these alone it knows the store key
each condition fills (:attr:`VisualizeRequest.keys`), the key of the background job that computes
it (:meth:`VisualizeRequest.job_key`, equal for equal sets of conditions in any order), what of it
is stored already (:meth:`VisualizeRequest.stored`) and how many images a run scores
(:attr:`VisualizeRequest.images_to_score`). :func:`VisualizeRequest.for_unit` builds the paper's
unit request: the control plus every sign × strength, the control rule applied here and nowhere
else.

    request = VisualizeRequest.for_unit(model, generator, 373, settings)
    results = run_request(request)                  # signseg_core.optimize.visualize
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from signseg_core.conditions import (
    DEFAULT_ALPHAS,
    SIGNS,
    Condition,
    check_unit,
    condition_grid,
    unique_conditions,
)
from signseg_core.generators.catalog import make_generator
from signseg_core.optimize.results import ConditionResult, load_condition
from signseg_core.optimize.settings import ConditionKey, VisualizeSettings, condition_key
from signseg_core.store import ResultStore, key_digest


def unit_conditions(unit: int, *, signs: Sequence[str] = SIGNS,
                    alphas: Sequence[float] = DEFAULT_ALPHAS) -> tuple[Condition, ...]:
    """The conditions of one unit's request: the control (alpha 0) first, whether or not
    ``alphas`` holds 0, then each sign over the rising strengths (21 for the paper's grid)."""
    strengths = tuple(sorted(set(alphas) | {0.0}))
    return tuple(condition_grid([unit], signs=tuple(signs), alphas=strengths))


@dataclass(frozen=True, eq=False)
class VisualizeRequest:
    """Preferred images of ``conditions`` of ``model``'s readout through ``generator``.

    Parameters
    ----------
    model : ZooModel (or a readout model of recorded neurons); read, never changed.
    generator : a built generator (``make_generator(settings.generator, ...)``) on the model's
        device; its name and fingerprint enter every key.
    conditions : the conditions to evolve, in run order; duplicates (and a second control of the
        same unit) are dropped, first kept. Units must index the model's readout.
    settings : everything else that determines the images (budget, seed, precision, ...).
    """

    model: object
    generator: object
    conditions: tuple[Condition, ...]
    settings: VisualizeSettings

    def __post_init__(self) -> None:
        conditions = tuple(unique_conditions(self.conditions))
        if not conditions:
            raise ValueError("a request needs at least one condition")
        for c in conditions:
            check_unit(c.unit, self.model.n_classes)
        object.__setattr__(self, "conditions", conditions)

    @classmethod
    def for_units(cls, model, generator, units: Sequence[int], settings: VisualizeSettings, *,
                  signs: Sequence[str] = SIGNS,
                  alphas: Sequence[float] = DEFAULT_ALPHAS) -> VisualizeRequest:
        """Several units' requests as one: :func:`unit_conditions` of each unit, unit by unit."""
        conditions = [c for u in units for c in unit_conditions(u, signs=signs, alphas=alphas)]
        return cls(model, generator, tuple(conditions), settings)

    @classmethod
    def for_unit(cls, model, generator, unit: int, settings: VisualizeSettings, *,
                 signs: Sequence[str] = SIGNS,
                 alphas: Sequence[float] = DEFAULT_ALPHAS) -> VisualizeRequest:
        """One unit's request: :func:`unit_conditions` of ``unit``."""
        return cls(model, generator, unit_conditions(unit, signs=signs, alphas=alphas), settings)

    @classmethod
    def build(cls, model, conditions, settings: VisualizeSettings, *,
              generator=None) -> VisualizeRequest:
        """A request of ``conditions``; without a ``generator``, the settings' one is built on the
        model's device (GAN weights load each time: pass a cached one where there is one)."""
        if generator is None:
            generator = make_generator(settings.generator, device=model.device,
                                       **dict(settings.generator_options))
        return cls(model, generator, tuple(conditions), settings)

    @property
    def precision(self) -> str:
        """The precision that runs (and is stored) on the model's device."""
        return self.settings.precision_on(self.model.device)

    @functools.cached_property
    def keys(self) -> tuple[ConditionKey, ...]:
        """The store key of each condition, in the order of :attr:`conditions`."""
        return tuple(condition_key(self.model, self.generator, c, self.settings, self.precision)
                     for c in self.conditions)

    def job_key(self, store: ResultStore | None) -> dict:
        """The key a background job computing this request runs under: the sorted digests of
        :attr:`keys` and the store's folder, so equal requests from any session share one job.
        ``store=None``: a run that stores nothing."""
        where = str(store.directory) if store is not None else None
        return {"job": "visualize", "store": where,
                "conditions": sorted(key_digest(k) for k in self.keys)}

    def stored(self, store: ResultStore) -> dict[tuple, ConditionResult]:
        """The stored results of the request by :attr:`Condition.key` (missing ones absent;
        an unreadable entry is deleted and counts as missing)."""
        found = {}
        for condition, key in zip(self.conditions, self.keys):
            result = load_condition(store, key)
            if result is not None:
                found[condition.key] = result
        return found

    def missing(self, store: ResultStore) -> tuple[Condition, ...]:
        """The conditions whose results ``store`` does not hold (cheap: nothing is read)."""
        return tuple(c for c, k in zip(self.conditions, self.keys) if k not in store)

    @property
    def popsize(self) -> int:
        """Images scored per generation (step) of each restart: the evolution strategy's
        population (the settings', or its default rule ``4 + floor(3 log2 d)`` for the
        generator's code size ``d``), or a gradient generator's ``images_per_step``."""
        if getattr(self.generator, "method", "evolution") == "gradient":
            return int(self.generator.images_per_step)
        config = self.settings.cma_config(self.generator.sigma0)
        return config.strategy_parameters(self.generator.dim)["popsize"]

    @property
    def images_per_condition(self) -> int:
        """Images one condition's evolutions score: restarts × population × generations."""
        s = self.settings
        return s.restarts * self.popsize * s.generations

    @property
    def images_to_score(self) -> int:
        """Images one full run scores: conditions × restarts × population × generations."""
        return len(self.conditions) * self.images_per_condition

    @property
    def label(self) -> str:
        """``"efficientnet_lite0: 21 conditions, fourier 60 gen x 5"``, for job lists."""
        n, s = len(self.conditions), self.settings
        return (f"{self.model.name}: {n} condition{'s' * (n != 1)}, "
                f"{s.generator} {s.generations} gen x {s.restarts}")
