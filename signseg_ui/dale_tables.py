"""Sign statistics of the zoo's weights, cached: Dale indices per layer (trained and untrained),
a layer's channel ranking, and the readout's Dale index and sign ratio per model."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from signseg_core.models.registry import get_entry, load_model
from signseg_core.models.zoo import note_absent_layers
from signseg_core.signs import (
    compare_trained_untrained,
    layer_summary,
    rank_channels,
    ratio_summary,
    readout_dale_vs_accuracy,
)

from .cached_models import cached_model, cached_untrained
from .error_display import error_message


@st.cache_data(show_spinner="Computing Dale indices…", max_entries=16)
def dale_layer_table(name: str) -> pd.DataFrame:
    """:func:`~signseg_core.signs.layer_summary` of every conv/linear layer of ``name``, then a
    note row per layer its weights lack (:func:`~signseg_core.models.zoo.note_absent_layers`:
    alexnet_conv's fc6, so conv5's missing Dale index is said, not left out)."""
    model = cached_model(name)
    return note_absent_layers(layer_summary(model.layers), model)


@st.cache_data(show_spinner="Comparing with the untrained network…", max_entries=16)
def dale_comparison(name: str, seed: int) -> pd.DataFrame:
    """:func:`~signseg_core.signs.compare_trained_untrained` against the ``seed`` network, with
    the note rows of :func:`dale_layer_table`."""
    model = cached_model(name)
    table = compare_trained_untrained(model.layers, cached_untrained(name, seed).layers)
    return note_absent_layers(table, model)


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


def readout_models(names: list[str]) -> tuple[list[str], list[str]]:
    """``names`` split into the models with a readout layer and those without (conv trunks such
    as alexnet_conv, which have no readout Dale index or sign ratio); names the zoo does not
    know count as having one (loading them says what is wrong)."""
    with_readout, without = [], []
    for name in names:
        try:
            has = get_entry(name).has_readout
        except KeyError:
            has = True
        (with_readout if has else without).append(name)
    return with_readout, without


def readout_table(names: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """:func:`readout_stats` of each model with a readout (see :func:`readout_models`; the others
    are left out without a message), and one message per model that failed to load.

    Columns: ``model``, ``top1`` (None when unpublished), ``mean_dale``, ``ratio_mean``,
    ``ratio_std``, ``ratio`` ("1.03 ± 0.08", as in the paper's Table 2) and ``readout``.
    """
    rows, problems = [], []
    for name in readout_models(names)[0]:
        try:
            rows.append(readout_stats(name))
        except Exception as exc:  # one broken checkpoint must not hide the others
            problems.append(f"{name}: {error_message(exc)}")
    table = pd.DataFrame(rows, columns=["model", "top1", "mean_dale", "ratio_mean", "ratio_std",
                                        "readout"])
    table.insert(5, "ratio", [f"{m:.2f} ± {s:.2f}" for m, s in zip(table.ratio_mean,
                                                                     table.ratio_std)])
    return table, problems
