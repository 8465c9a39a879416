"""Models, generators and metric setups built once per server and shared read-only by every
session and job (``st.cache_resource``)."""

from __future__ import annotations

import streamlit as st

from signseg_core.generators.catalog import make_generator
from signseg_core.models.registry import load_model
from signseg_core.models.zoo import ZooModel
from signseg_core.paths import no_downloads
from signseg_core.sweeps.measure import Metrics
from signseg_core.sweeps.run import SweepSpec

from .device import current_device
from .error_display import show_error


@st.cache_resource(show_spinner="Loading model…", max_entries=6)
def _cached_model(name: str, device: str) -> ZooModel:
    return load_model(name, device=device)


def cached_model(name: str, device: str | None = None) -> ZooModel:
    """The zoo model ``name`` with its weights on ``device`` (default: the session's
    :func:`~signseg_ui.device.current_device`), shared read-only by every session."""
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


@st.cache_resource(show_spinner="Building the generator…", max_entries=4)
def cached_generator(name: str, device: str):
    """The generator ``name`` on ``device``, shared read-only by every session and job."""
    return make_generator(name, device=device)


@st.cache_resource(show_spinner="Setting up the similarity ensemble and the detector…",
                   max_entries=2)
def cached_metrics(device: str, ensemble: tuple[str, ...], lpips: bool,
                   detector: str | None) -> Metrics:
    """The sweep's metric models (read-only, shared by every session and job); the ensemble is
    the dashboard's cached models. Weights added later are seen after a server restart."""
    spec = SweepSpec(ensemble=ensemble, lpips=lpips, detector=detector)
    with no_downloads():  # opening a page never starts a download; the CLI sweep may
        return Metrics.build(spec, device, {n: cached_model(n, device) for n in ensemble})
