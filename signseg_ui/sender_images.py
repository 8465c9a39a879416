"""Gradient visualizations of a layer's most positive and most negative sender channels: read
from the store, computed as background jobs, drawn in two captioned rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from signseg_core.figures.image_checks import flat_indices, flat_warning
from signseg_core.figures.plots import image_strip
from signseg_core.jobs import Job, default_manager
from signseg_core.models.zoo import ZooModel
from signseg_core.optimize.gradvis import GradVisConfig
from signseg_core.store import default_store
from signseg_core.sweeps.tasks import gradvis_job, gradvis_job_key


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
    flat = flat_warning([f"channel {channels[i]}" for i in flat_indices(images)])
    if flat:
        st.warning(flat)
    return image_strip(rows, tile=160)
