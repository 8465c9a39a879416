"""One widget for the settings of an evolution of preferred images: generator, generations,
restarts, optionally the population, and seed, returned as one
:class:`~signseg_core.optimize.settings.VisualizeSettings`.

The defaults come from the caller, usually the engine's
:func:`~signseg_core.sweeps.preview.default_settings` (what ships precomputed, else a CPU preview),
whose own sentence :func:`~signseg_core.sweeps.preview.describe_defaults` is the caption; the
caption then names the optimiser that runs, in the engine's words
(:func:`~signseg_core.optimize.settings.describe_optimizer`: by default an isotropic ES with
step-size adaptation, not CMA-ES).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import streamlit as st

from signseg_core.errors import SignsegError
from signseg_core.generators.catalog import list_generators, make_generator
from signseg_core.optimize.settings import VisualizeSettings, describe_optimizer, describe_run

from .error_display import show_error

#: The number inputs: field → (label, smallest, largest, step).
NUMBER_INPUTS = {
    "generations": ("Generations", 1, 10000, 10),
    "restarts": ("Restarts", 1, 256, 1),
    "popsize": ("Population (0: automatic)", 0, 256, 2),
    "seed": ("Seed", 0, 2**31 - 1, 1),
}


def generator_choices() -> list[str]:
    """Generators this machine can run: the weight-free ones plus GANs whose weights are here."""
    return [g["name"] for g in list_generators() if g["weights_present"]]


def code_dim(settings: VisualizeSettings) -> int:
    """The length d of the codes ``settings`` evolve: a GAN's own, or the weight-free
    generator's under ``settings.generator_options`` (cheap to build)."""
    listed = {g["name"]: g for g in list_generators()}
    entry = listed.get(settings.generator)
    if entry is not None and (entry["needs_weights"] or not settings.generator_options):
        return int(entry["dim"])
    return make_generator(settings.generator, **dict(settings.generator_options)).dim


def optimizer_caption(settings: VisualizeSettings) -> str:
    """"Optimiser: isotropic (μ/μ_w, λ)-ES with ...; λ = 40, μ = 20 at d = 4096.", or a
    gradient generator's own words (MACO: Adam on the phases of a fixed spectrum)."""
    listed = {g["name"]: g for g in list_generators()}
    if listed.get(settings.generator, {}).get("method") == "gradient":
        generator = gradient_generator(settings.generator, settings.generator_options)
        return f"Optimiser: {describe_run(settings, generator)}."
    return f"Optimiser: {describe_optimizer(settings, code_dim(settings))}."


@functools.lru_cache(maxsize=4)
def gradient_generator(name: str, options: tuple):
    """A gradient generator, built once per process (MACO's spectrum takes ~2 s): only its
    description is read here."""
    return make_generator(name, **dict(options))


def settings_fields(*, population: bool) -> tuple[str, ...]:
    """The :class:`VisualizeSettings` fields the widget shows, in its column order."""
    return ("generator", "generations", "restarts", *(("popsize",) * population), "seed")


def set_defaults(key: str, defaults: VisualizeSettings, *, fields: Sequence[str],
                 reset_on=None) -> None:
    """Put ``defaults`` into the widgets' state before they are drawn: where a widget has no
    value yet, and into every widget whenever ``reset_on`` (e.g. the model's name) changed."""
    values = {f: getattr(defaults, f) for f in fields}
    if "popsize" in values:
        values["popsize"] = defaults.popsize or 0  # 0: the automatic population
    marker = f"_{key}_settings_for"
    reset = reset_on is not None and st.session_state.get(marker) != reset_on
    for field, value in values.items():
        if reset or f"{key}_{field}" not in st.session_state:
            st.session_state[f"{key}_{field}"] = value
    st.session_state[marker] = reset_on


def evolution_settings(*, key: str, defaults: VisualizeSettings, reset_on=None,
                       population: bool = False, columns: Sequence | None = None,
                       persist: str | None = None, caption: str = "") -> VisualizeSettings | None:
    """Generator, generations, restarts, (population,) seed; the settings, or None with an
    ``st.error`` when they do not make a valid :class:`VisualizeSettings`.

    Parameters
    ----------
    key : prefix of the widget keys ``<key>_generator``, ``_generations``, ``_restarts``,
        ``_popsize``, ``_seed``.
    defaults : the values the widgets start from; every other setting is taken from it too.
    reset_on : when this value changes between runs (e.g. the model's name), the widgets go back
        to ``defaults``; None: they keep what the user chose.
    population : also offer the population (0: the automatic ``4 + 3 log2 d``).
    columns : containers to draw the inputs into, one each (default: new ``st.columns``).
    persist : Streamlit's ``persist_state`` of every input (``"session"``: kept across pages).
    caption : a line beneath the inputs, e.g.
        :func:`~signseg_core.sweeps.preview.describe_defaults`; :func:`optimizer_caption` follows.
    """
    fields = settings_fields(population=population)
    set_defaults(key, defaults, fields=fields, reset_on=reset_on)
    cells = dict(zip(fields, columns if columns is not None else st.columns(len(fields))))
    values = {"generator": cells["generator"].selectbox(
        "Generator", generator_choices(), key=f"{key}_generator", persist_state=persist)}
    for field in fields[1:]:
        label, low, high, step = NUMBER_INPUTS[field]
        values[field] = int(cells[field].number_input(
            label, min_value=low, max_value=high, step=step, key=f"{key}_{field}",
            persist_state=persist))
    if "popsize" in values:
        values["popsize"] = values["popsize"] or None
    try:
        settings = dataclasses.replace(defaults, **values)
        words = optimizer_caption(settings)
    except (ValueError, SignsegError) as exc:
        if caption:
            st.caption(caption)
        show_error(exc, context="Optimisation settings")
        return None
    st.caption(f"{caption} {words}" if caption else words)
    return settings
