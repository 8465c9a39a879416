"""The Shape-and-background page's helpers: where the datasets are, their checks, the background
job that evaluates a model under whole-readout ablation, and its figure.

A visitor never names a folder on the server unless the operator turned server paths on
(:mod:`signseg_ui.serving`); otherwise the page reads the operator's location,
``<cache>/datasets/cue-conflict`` or ``<cache>/datasets/bg_challenge``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from signseg_core.analyses.ablation_benchmarks import AblationGrid, family_members
from signseg_core.analyses.background_challenge import backgrounds
from signseg_core.analyses.shape_texture import shape_texture
from signseg_core.datasets.backgrounds import (
    VARIANTS,
    challenge_foregrounds,
    find_backgrounds,
    variant_images,
)
from signseg_core.datasets.cue_conflict import cue_conflict_images
from signseg_core.datasets.files import default_dataset_dir
from signseg_core.figures.benchmark_plots import backgrounds_figure, shape_texture_figure
from signseg_core.jobs import Job, default_manager
from signseg_core.models.zoo import ZooModel
from signseg_core.store import default_store
from signseg_ui.pickers import picker_options
from signseg_ui.serving import hide_host_paths, server_path, server_paths_enabled, shown_path

#: The two benchmarks, with the words the page shows.
BENCHMARKS = {"shape-texture": "Shape vs texture (cue-conflict, Fig 16)",
              "backgrounds": "Backgrounds (ImageNet-9, Fig 17)"}
_FOLDERS = {"shape-texture": "cue-conflict", "backgrounds": "bg_challenge"}
#: Variants the page scores by default: the ones Fig 17 and the BG-gap need.
DEFAULT_VARIANTS = ("original", "mixed_same", "mixed_rand")


def dataset_folder(benchmark: str, *, key: str) -> Path:
    """The folder to read: a server path the visitor names (only when the operator allows it,
    and only inside the data roots), else the operator's ``<cache>/datasets/<name>``."""
    default = default_dataset_dir(_FOLDERS[benchmark])
    if server_paths_enabled():
        text = st.text_input("Dataset folder on the server (empty: the configured one)", key=key)
        if text.strip():
            return server_path(text, what="dataset folder")
    st.caption(f"Dataset folder: `{shown_path(default)}`")
    return default


def dataset_problem(benchmark: str, folder: Path, variants: tuple[str, ...],
                    challenge: bool) -> str | None:
    """None when the dataset is there in its publisher's layout, else the one sentence saying
    what is wrong or missing (host paths hidden as :mod:`serving` says)."""
    try:
        if benchmark == "shape-texture":
            cue_conflict_images(folder)
        else:
            needed = tuple(dict.fromkeys((*variants, *(("fg_mask", "original", "only_bg_t")
                                                      if challenge else ()))))
            root = find_backgrounds(folder, needed)
            for v in variants:
                variant_images(root, v)
            if challenge:
                challenge_foregrounds(root)
    except (OSError, ValueError) as exc:  # DatasetError / DatasetMissingError: one sentence
        return hide_host_paths(str(exc))
    return None


def benchmark_job_key(benchmark: str, models: Sequence[ZooModel], folder: Path,
                      grid: AblationGrid, variants: tuple[str, ...], challenge: bool) -> dict:
    """What the job computes: equal requests from two sessions share one job."""
    return {"job": "ablation_benchmark", "benchmark": benchmark,
            "models": [[m.name, m.fingerprint, str(m.device)] for m in models],
            "folder": str(folder), "alphas": list(grid.alphas), "signs": list(grid.signs),
            "variants": list(variants), "challenge": challenge}


def comparison_options(name: str) -> list[str]:
    """Models the page can compare ``name`` with: those with a readout and weights here; the
    robust ResNet50 family (Fig 16's series) first, then the rest of the zoo."""
    options = [n for n in picker_options(needs_readout=True) if n != name]
    family = [n for n in family_members("robust") if n in options]
    return family + [n for n in options if n not in family]


def find_benchmark_job(key: dict) -> Job | None:
    return default_manager().get(key, cancelling=True)


def submit_benchmark(benchmark: str, models: Sequence[ZooModel], folder: Path,
                     grid: AblationGrid, variants: tuple[str, ...], challenge: bool) -> Job:
    """Evaluate ``models`` one after another in the background (progress and Cancel per chunk
    of images; chunks already stored, e.g. a model evaluated alone before, are kept and not
    recomputed); the job's result is their tables, one after another."""
    key = benchmark_job_key(benchmark, models, folder, grid, variants, challenge)

    def run(progress, should_stop) -> pd.DataFrame:
        tables = []
        for i, model in enumerate(models):
            # every model reads the same images under the same grid: equal totals, so the bar
            # and its ETA run over all of them
            def report(done, total, message="", *_, i=i, name=model.name):
                progress(i * total + done, len(models) * total, f"{name}: {message}")

            common = dict(grid=grid, store=default_store(), progress=report,
                          should_stop=should_stop)
            tables.append(shape_texture(model, folder, **common) if benchmark == "shape-texture"
                          else backgrounds(model, folder, variants=variants,
                                           challenge=challenge, **common))
        return pd.concat(tables, ignore_index=True)

    names = ", ".join(m.name for m in models)
    label = f"{names}: {BENCHMARKS[benchmark]}, {len(grid.conditions())} conditions"
    return default_manager().submit(key, run, label=label)


def benchmark_figure(benchmark: str, table: pd.DataFrame) -> go.Figure:
    if benchmark == "shape-texture":
        return shape_texture_figure(table, title="")
    return backgrounds_figure(table, title="")


def variant_choices() -> tuple[str, ...]:
    return VARIANTS
