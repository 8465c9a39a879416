"""The device a session computes on: chosen once on the home page, kept for every page."""

from __future__ import annotations

import streamlit as st
import torch

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
