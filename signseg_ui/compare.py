"""UI helpers of the Compare models page (and the Export page's stored-sweep panels).

* :func:`family_picker`: a preset family or any set of zoo models; kept for the session and in
  the URL as ``?models=a,b,c``.
* :func:`sweep_settings`: the settings a stored sweep was computed with (one form, shared by the
  Compare and Export pages for the whole session), as a :class:`~signseg_core.sweeps.run.SweepSpec`.
* :func:`stored_sweep` and :func:`show_coverage`: the stored rows, read without recomputing
  (cached), and what is missing, with the CLI command that computes it.

Streamlit glue only; the reading, tables and figures live in ``signseg_core``.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from signseg_core.conditions import parse_alphas, parse_units
from signseg_core.errors import UnknownNameError
from signseg_core.metrics.similarity import DEFAULT_ENSEMBLE
from signseg_core.models.imagenet import DEFAULT_UNITS, NUM_CLASSES
from signseg_core.models.registry import TANH_ARCHS, get_entry, model_eps
from signseg_core.store import default_store, key_digest
from signseg_core.sweeps.measure import METRIC_COLUMNS
from signseg_core.sweeps.preview import PRECOMPUTED
from signseg_core.sweeps.run import SweepSpec
from signseg_core.sweeps.stored import (
    StoredSweep,
    read_stored_sweep,
    sweep_command,
    weights_problem,
)
from signseg_core.sweeps.tables import FAMILIES, METRIC_LABELS, family_models

from .cached_models import cached_metrics, cached_model
from .device import current_device
from .evolution_settings import evolution_settings, settings_fields
from .pickers import picker_options
from .widget_choices import carry_across_pages

CUSTOM = "custom"
DEFAULT_FAMILY = "lite"
QUERY_MODELS = "models"
SESSION = "session"  # every widget here keeps its value across pages
#: Optimisation settings of the sweep form: those of the precomputed EfficientNet-Lite0 sweep.
SWEEP_SETTINGS = PRECOMPUTED["efficientnet_lite0"]
#: The sweep form's other defaults.
SWEEP_DEFAULTS = {
    "sweep_units": " ".join(map(str, DEFAULT_UNITS)), "sweep_alphas": "0:1:0.1",
    "sweep_ensemble": list(DEFAULT_ENSEMBLE), "sweep_lpips": True, "sweep_detector": True,
}


# -- parsing -----------------------------------------------------------------------------------

def parse_models(raw: str) -> tuple[list[str], list[str]]:
    """``"a,b"`` from the URL → (zoo names, messages about the names that are not)."""
    names, problems = [], []
    for name in dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()):
        try:
            get_entry(name)
            names.append(name)
        except UnknownNameError as exc:
            problems.append(str(exc))
    return names, problems


def split_by_weights(models: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """``models`` with weights here, and ``(name, why not)`` for the others."""
    present, absent = [], []
    for name in models:
        problem = weights_problem(name)
        if problem is None:
            present.append(name)
        else:
            absent.append((name, problem[1]))
    return present, absent


def family_of(models: Sequence[str], arch: str) -> str:
    """The family whose models are exactly ``models`` (in order), else :data:`CUSTOM`."""
    for family in FAMILIES:
        if tuple(models) == family_models(family, arch=arch):
            return family
    return CUSTOM


# -- the family picker -------------------------------------------------------------------------

def _family_changed(key: str) -> None:
    family = st.session_state[f"{key}_family"]
    if family != CUSTOM:
        arch = st.session_state.get(f"{key}_arch", "resnet18")
        st.session_state[f"{key}_models"] = list(family_models(family, arch=arch))


def _models_changed(key: str) -> None:
    arch = st.session_state.get(f"{key}_arch", "resnet18")
    st.session_state[f"{key}_family"] = family_of(st.session_state[f"{key}_models"], arch)


def _initial_models(key: str) -> None:
    """First visit of the session: the URL's ``?models=``, else the default family."""
    models = list(family_models(DEFAULT_FAMILY))
    raw = st.query_params.get(QUERY_MODELS)
    if raw:
        wanted, problems = parse_models(raw)
        for problem in problems:
            st.error(f"Cannot open ?{QUERY_MODELS}={raw}: {problem}")
        models = wanted or models
    arch = models[0] if models and models[0] in TANH_ARCHS else "resnet18"
    st.session_state[f"{key}_models"] = models
    st.session_state[f"{key}_family"] = family_of(models, arch)
    st.session_state[f"{key}_arch"] = arch


def family_picker(*, key: str) -> list[str]:
    """A family preset (or "custom") and a multiselect of zoo models; returns the chosen models.

    Choosing a family fills the multiselect; editing the multiselect turns the family into
    "custom" (unless it matches one). The choice is kept for the session and written to the
    URL as ``?models=a,b,c``; unknown names in the URL are shown as errors and dropped.
    """
    if f"{key}_models" not in st.session_state:
        _initial_models(key)
    chosen = list(st.session_state[f"{key}_models"])
    options = list(dict.fromkeys([*picker_options(only_present=False, needs_readout=True),
                                  *chosen]))
    left, right = st.columns([1, 3])
    family = left.selectbox(
        "Family", [*FAMILIES, CUSTOM], key=f"{key}_family", persist_state=SESSION,
        format_func=lambda f: FAMILIES[f][0] if f in FAMILIES else "Custom selection",
        on_change=_family_changed, args=(key,))
    if family == "tanh":
        left.selectbox("Architecture (ReLU → Tanh)", TANH_ARCHS, key=f"{key}_arch",
                       persist_state=SESSION, on_change=_family_changed, args=(key,))
    models = right.multiselect("Models", options, key=f"{key}_models", persist_state=SESSION,
                               on_change=_models_changed, args=(key,),
                               help="Any zoo models, in the order they are drawn.")
    text = ",".join(models)
    if st.query_params.get(QUERY_MODELS) != text:
        st.query_params[QUERY_MODELS] = text
    return models


# -- sweep settings ----------------------------------------------------------------------------

def sweep_settings(models: Sequence[str]) -> SweepSpec | None:
    """A form of the sweep's settings, applied together; the spec for ``models``, or None
    (with an ``st.error``) when a field does not parse. Defaults: :data:`SWEEP_SETTINGS` and
    :data:`SWEEP_DEFAULTS`."""
    for name, value in SWEEP_DEFAULTS.items():
        st.session_state.setdefault(name, value)
    carry_across_pages([*SWEEP_DEFAULTS,
                        *(f"sweep_{f}" for f in settings_fields(population=False))])
    ensemble_options = list(dict.fromkeys([*picker_options(), *st.session_state["sweep_ensemble"]]))
    with st.expander("Sweep settings (stored results are found only at the settings they were "
                     "computed with)"):
        with st.form("sweep_form", border=False):
            settings = evolution_settings(key="sweep", defaults=SWEEP_SETTINGS,
                                          persist=SESSION)
            c1, c2 = st.columns([3, 1])
            units = c1.text_input("Units", key="sweep_units", persist_state=SESSION,
                                  help="Readout units, e.g. the paper's 11 default units.")
            alphas = c2.text_input("Ablation strengths α", key="sweep_alphas",
                                   persist_state=SESSION, help="start:stop:step or a list")
            c1, c2, c3 = st.columns([3, 1, 1])
            ensemble = c1.multiselect("Similarity ensemble", ensemble_options,
                                      key="sweep_ensemble", persist_state=SESSION)
            lpips = c2.checkbox("LPIPS", key="sweep_lpips", persist_state=SESSION)
            detector = c3.checkbox("Objectness detector", key="sweep_detector",
                                   persist_state=SESSION)
            st.form_submit_button("Apply", key="sweep_apply")
    if settings is None:
        return None
    try:
        return SweepSpec(
            models=tuple(models), units=parse_units(units, NUM_CLASSES),
            alphas=parse_alphas(alphas), settings=settings,
            ensemble=tuple(ensemble), lpips=bool(lpips),
            detector=SweepSpec().detector if detector else None)
    except ValueError as exc:
        st.error(f"Sweep settings: {exc}")
        return None


# -- what to draw of a stored sweep ------------------------------------------------------------

def metric_picker(*, key: str, label: str = "Metric", container=st) -> str:
    """A selectbox of the sweep's metric columns (by their labels), similarity at first; the
    choice is kept for the session."""
    st.session_state.setdefault(key, "similarity")
    return container.selectbox(label, METRIC_COLUMNS, format_func=METRIC_LABELS.get, key=key,
                               persist_state=SESSION)


def placement_picker(models: Sequence[str], *, key: str) -> dict[str, float] | None:
    """Where Spearman's ρ places each model: at its L∞ training ε (the default when any model
    has one; returns None, :func:`~signseg_core.models.registry.model_eps` places them) or at
    its position in ``models`` (returns ``{model: position}``)."""
    if key not in st.session_state:
        st.session_state[key] = ("eps" if any(model_eps(m) is not None for m in models)
                                 else "position")
    against = st.radio("Place each model at", ("eps", "position"), horizontal=True, key=key,
                       persist_state=SESSION,
                       format_func={"eps": "its L∞ training ε (ResNet50 = 0)",
                                    "position": "its position in the list above"}.get)
    return None if against == "eps" else {m: float(i) for i, m in enumerate(models)}


def placed_models(models: Sequence[str], positions: dict[str, float] | None) -> list[str]:
    """The ``models`` that :func:`placement_picker`'s ``positions`` give a place."""
    return [m for m in models
            if (model_eps(m) if positions is None else positions.get(m)) is not None]


# -- stored results ----------------------------------------------------------------------------

@st.cache_data(ttl=600, show_spinner="Reading stored sweep results…", max_entries=16)
def _read(digest: str, store_dir: str, _spec: SweepSpec) -> StoredSweep:
    device = current_device()
    try:  # the explorer's cached metric setup: its networks are built once per server
        metrics = cached_metrics(device, _spec.ensemble, _spec.lpips, _spec.detector)
    except Exception:  # noqa: BLE001 -- read_stored_sweep builds it again and says why
        metrics = None
    return read_stored_sweep(_spec, store=default_store(), device=device,
                             loader=lambda name: cached_model(name, device), metrics=metrics)


def stored_sweep(spec: SweepSpec) -> StoredSweep:
    """:func:`~signseg_core.sweeps.stored.read_stored_sweep` of ``spec`` in the default store,
    cached for 10 minutes (:func:`forget_stored` re-reads)."""
    return _read(key_digest(spec), str(default_store().directory), spec)


def forget_stored() -> None:
    """Drop cached reads, so the next :func:`stored_sweep` sees newly stored results."""
    _read.clear()


def show_coverage(stored: StoredSweep, spec: SweepSpec, *, key: str) -> None:
    """What is stored per model, and for what is not: why, and the command computing it."""
    st.dataframe(stored.coverage.astype({"units_found": str, "units_missing": str}),
                 hide_index=True, key=f"{key}_coverage",
                 column_config={"reason": st.column_config.TextColumn(width="large")})
    no_weights = stored.coverage[stored.coverage.status.isin(["no weights", "unknown", "error"])]
    if len(no_weights):
        st.warning("Cannot read results for these models here:\n"
                   + "\n".join(f"- **{r.model}**: {r.reason}" for r in no_weights.itertuples()))
    if stored.to_compute:
        st.info(f"Not computed yet at these settings: {', '.join(stored.to_compute)}. This "
                "command computes them (results go to the store; minutes per unit on a CPU, "
                "add --device cuda on a GPU), then press Re-read:")
        st.code(sweep_command(spec, stored.to_compute), language="bash", wrap_lines=True)


def full_stop(text: str) -> str:
    """``text`` ending in exactly one full stop (statuses and reasons often end in their own)."""
    return text.rstrip().rstrip(".") + "."


def metric_setup_note(statuses: dict) -> str:
    """``"Metric setup: LPIPS off; objectness ok: ..."`` from a stored sweep's metric statuses,
    one sentence."""
    lpips, objectness = (full_stop(statuses.get(k, "?"))[:-1] for k in ("lpips", "objectness"))
    return f"Metric setup: LPIPS {lpips}; objectness {objectness}."
