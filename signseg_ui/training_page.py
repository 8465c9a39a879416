"""The Training runs page's sections: which runs folder, which runs, their curves.

Runs are read, never started: the page shows the command that starts one. The folder is the
operator's (``<cache>/training``, moved with ``SIGNSEG_CACHE_DIR``); a visitor may name another
only where the operator turned server paths on (:func:`signseg_ui.serving.server_path`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from signseg_core import paths
from signseg_core.training.records import read_epochs, read_run, training_runs
from signseg_ui.serving import server_path, server_paths_enabled, shown_path

#: The command that trains the paper's pair (printed on the page; run it in a terminal).
START_COMMANDS = (
    "python -m signseg_core train resnet18 --activation relu --data IMAGENET --epochs 16 "
    "--num-classes 1000 --workers 8 --gpu",
    "python -m signseg_core train resnet18 --activation tanh --data IMAGENET --epochs 16 "
    "--num-classes 1000 --workers 8 --gpu",
)


def default_runs_folder() -> Path:
    """Where ``train`` puts runs by default: ``<cache>/training``."""
    return paths.cache_dir() / "training"


def runs_folder_picker(*, key: str) -> Path:
    """The folder to read runs from: the default, or (server paths on) one the visitor names."""
    folder = default_runs_folder()
    if not server_paths_enabled():
        return folder
    text = st.text_input("Runs folder on the server (empty: the default)", key=key)
    if not text.strip():
        return folder
    try:
        return server_path(text, what="runs folder")
    except ValueError as exc:
        st.error(str(exc))
        st.stop()


def run_label(folder: Path, run: dict) -> str:
    """``resnet18 tanh (resnet18_tanh)``: architecture, activation, and the folder's name."""
    return f"{run.get('arch', '?')} {run.get('activation', '?')} ({folder.name})"


def load_runs(root: Path) -> dict[str, pd.DataFrame]:
    """Label → per-epoch records of every run under ``root`` that has finished an epoch
    (unreadable runs are left out: a page reads, it does not repair)."""
    out = {}
    for folder in training_runs(root):
        try:
            run = read_run(folder)
            table = read_epochs(folder)
        except (OSError, ValueError):
            continue
        if run is not None and len(table):
            out[run_label(folder, run)] = table
    return out


def run_picker(runs: dict[str, pd.DataFrame], *, key: str) -> dict[str, pd.DataFrame]:
    """A multiselect of the runs (all at first, and again when another folder holds none of
    the runs chosen before); returns the chosen ones."""
    labels = list(runs)
    if key not in st.session_state or not set(st.session_state[key]) & set(labels):
        st.session_state[key] = labels
    chosen = st.multiselect("Runs", labels, key=key)
    return {label: runs[label] for label in chosen}


def describe_folder(root: Path, n: int) -> str:
    return f"{n} run(s) with records in {shown_path(root)}."
