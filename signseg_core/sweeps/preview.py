"""What the repository ships precomputed, and the budget a CPU previews a new unit with.

``docs/data`` holds bundles (:mod:`signseg_core.sweeps.bundle`) of the paper's 11 default units
on the embedded model, made on a GPU; ``make run`` imports them into the store so that the
ablation explorer shows them at once. :data:`PRECOMPUTED` says under which settings they were
made, so that a page opening on that model asks the store for exactly those keys.
"""

from __future__ import annotations

from signseg_core.generators.catalog import GRADIENT_GENERATORS, generator_method  # noqa: F401
from signseg_core.models.imagenet import DEFAULT_UNITS
from signseg_core.optimize.request import unit_conditions
from signseg_core.optimize.settings import VisualizeSettings

#: Settings whose results ship precomputed (``docs/data/lite0_fourier_g60_r5_*.npz``), by model.
PRECOMPUTED: dict[str, VisualizeSettings] = {
    "efficientnet_lite0": VisualizeSettings(generator="fourier", restarts=5, generations=60,
                                            seed=0),
}
#: The units whose results ship precomputed under :data:`PRECOMPUTED`, by model.
PRECOMPUTED_UNITS: dict[str, tuple[int, ...]] = {"efficientnet_lite0": DEFAULT_UNITS}
#: The full budget of a model without precomputed results: the paper's 100 generations and 10
#: restarts (its image sets pool 10 DeePSiM + 10 BigGAN evolutions; see ``SweepSpec``).
PAPER_BUDGET = VisualizeSettings(generator="fourier", restarts=10, generations=100, seed=0)
#: The budget a CPU previewed any unit with until ``maco`` replaced it (below): ``fourier`` CMA-ES
#: chosen by measurement among budgets of ~400 images per condition (``docs/benchmarks.md``, "Any
#: unit live"): the condition on screen in 12 s on a 2-core CPU; its best images reach about half
#: the full budget's logit (4.5 against 9.1).
FOURIER_PREVIEW = VisualizeSettings(generator="fourier", restarts=1, generations=44, popsize=8,
                                    seed=0)
#: The budget a CPU previews any unit with: ``maco``, one restart of 175 gradient steps, the steps
#: it made in the same 12 s on this 2-core CPU (median 179, 158-193 over the 11 units). At those
#: 12 s it beat the fourier preview's setting on every measure (``docs/generator_quality.md``,
#: "At the preview's 12 s"): held-out top-5 10/11 units under Lite1 and Lite2 against 3/11 and
#: 1/11, Lite0 logit 30.1 against 6.5, objectness 0.267 against 0.121 (control condition).
CPU_PREVIEW = VisualizeSettings(generator="maco", restarts=1, generations=175, seed=0)
#: The budgets a page offers: ``"preview"`` (:data:`CPU_PREVIEW`) and ``"full"``.
BUDGETS = ("preview", "full")


def full_budget(model_name: str) -> VisualizeSettings:
    """The full budget of ``model_name``: the precomputed results' settings where the repository
    ships some, else :data:`PAPER_BUDGET`."""
    return PRECOMPUTED.get(model_name, PAPER_BUDGET)


def budget_settings(model_name: str, budget: str) -> VisualizeSettings:
    """The settings of ``budget`` (one of :data:`BUDGETS`) for ``model_name``."""
    if budget not in BUDGETS:
        raise ValueError(f"budget {budget!r}; choose from {BUDGETS}")
    return CPU_PREVIEW if budget == "preview" else full_budget(model_name)


def default_budget(device: str) -> str:
    """``"full"`` on a GPU (the paper's budget), ``"preview"`` elsewhere."""
    return "full" if str(device).startswith("cuda") else "preview"


def precomputed_units(model_name: str) -> tuple[int, ...]:
    """Units whose full-budget results ship with the repository (instant in the explorer)."""
    return PRECOMPUTED_UNITS.get(model_name, ())


def default_settings(model_name: str) -> VisualizeSettings:
    """The settings a page starts from for ``model_name``: the precomputed ones where the
    repository ships results, else :data:`CPU_PREVIEW`."""
    return PRECOMPUTED.get(model_name, CPU_PREVIEW)


def describe_defaults() -> str:
    """One paragraph for a settings panel, written from :data:`PRECOMPUTED` and
    :data:`CPU_PREVIEW` (so the words never drift from the numbers)."""
    n = len(unit_conditions(0))
    shipped = "; ".join(
        f"{name} defaults to {s.restarts} restarts × {s.generations} generations of the "
        f"{s.generator} generator, seed {s.seed}: the settings of the precomputed results for "
        "the paper's 11 default units, shown at once" for name, s in PRECOMPUTED.items())
    p = CPU_PREVIEW
    return (f"{shipped}. Other units and models default to a CPU preview: {p.restarts} "
            f"restart{'s' * (p.restarts != 1)} × {p.generations} {iterations(p)} of the "
            f"{p.generator} generator; a unit is {n} conditions.")


def iterations(settings: VisualizeSettings) -> str:
    """What ``settings.generations`` counts: gradient ``steps`` for a generator optimised by
    gradient ascent (maco), else evolution ``generations``."""
    return "steps" if generator_method(settings.generator) == "gradient" else "generations"
