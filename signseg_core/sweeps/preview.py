"""What the repository ships precomputed, and the budget a CPU previews a new unit with.

``docs/data`` holds bundles (:mod:`signseg_core.sweeps.bundle`) of the paper's 11 default units
on the embedded model, made on a GPU; ``make run`` imports them into the store so that the
ablation explorer shows them at once. :data:`PRECOMPUTED` says under which settings they were
made, so that a page opening on that model asks the store for exactly those keys.
"""

from __future__ import annotations

from signseg_core.optimize.request import unit_conditions
from signseg_core.optimize.settings import VisualizeSettings

#: Settings whose results ship precomputed (``docs/data/lite0_fourier_g60_r5_*.npz``), by model.
PRECOMPUTED: dict[str, VisualizeSettings] = {
    "efficientnet_lite0": VisualizeSettings(generator="fourier", restarts=5, generations=60,
                                            seed=0),
}
#: The budget a model without precomputed results starts from: a few minutes per unit on a CPU.
CPU_PREVIEW = VisualizeSettings(generator="fourier", restarts=4, generations=20, seed=0)


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
    return (f"{shipped}. Other models default to a CPU preview of {p.restarts} restarts × "
            f"{p.generations} generations; a unit is {n} conditions, so new settings take "
            "minutes on a CPU.")
