"""Shape and background: the cue-conflict shape bias and the ImageNet-9 backgrounds challenge of a
model whose whole readout loses its positive or negative weights (paper Figs 16 and 17)."""

from __future__ import annotations

import streamlit as st

from signseg_core.analyses.ablation_benchmarks import AblationGrid
from signseg_core.conditions import parse_alphas
from signseg_core.datasets.backgrounds import CHANCE
from signseg_ui.ablation_benchmarks import (
    BENCHMARKS,
    DEFAULT_VARIANTS,
    benchmark_figure,
    benchmark_job_key,
    comparison_options,
    dataset_folder,
    dataset_problem,
    find_benchmark_job,
    submit_benchmark,
    variant_choices,
)
from signseg_ui.cached_models import require_model
from signseg_ui.error_display import show_error
from signseg_ui.export_widgets import export_panel
from signseg_ui.jobs_widget import job_panel
from signseg_ui.navigation import sidebar_nav
from signseg_ui.pickers import model_picker

st.set_page_config(page_title="Shape and background · signseg", layout="wide")
sidebar_nav()
st.title("Shape and background under ablation")
st.write(
    "Remove every output unit's positive (or negative) input weights at strength α, by the same "
    "cumulative rule as the explorer, and ask the whole network two benchmark questions: does it "
    "still decide cue-conflict images by their shape or by their texture (Geirhos et al.), and "
    "does it still find the object when the background changes (ImageNet-9, Xiao et al.)?"
)

name = model_picker(key="bench_model")
others = st.multiselect("Compare with (as Fig 16 compares the robust ResNet50 series)",
                        comparison_options(name), key="bench_compare",
                        help="Each model is evaluated once; its stored chunks serve every "
                             "comparison it is part of.")
models = [require_model(n) for n in (name, *others)]
benchmark = st.radio("Benchmark", list(BENCHMARKS), format_func=BENCHMARKS.get,
                     horizontal=True, key="bench_kind")
col_alpha, col_sign = st.columns(2)
alpha_text = col_alpha.text_input("Strengths α (start:stop:step or a list)", value="0:1:0.1",
                                  key="bench_alphas")
sign_choice = col_sign.radio("Signs", ["both", "positive", "negative"], horizontal=True,
                             key="bench_signs")
variants, challenge = (), False
if benchmark == "backgrounds":
    variants = tuple(st.multiselect("ImageNet-9 variants", variant_choices(),
                                    default=list(DEFAULT_VARIANTS), key="bench_variants"))
    challenge = st.checkbox(
        "Also the backgrounds challenge (every foreground on every background: hours, a GPU's "
        "work)", key="bench_challenge")
try:
    signs = ("positive", "negative") if sign_choice == "both" else (sign_choice,)
    grid = AblationGrid(alphas=parse_alphas(alpha_text), signs=signs)
    folder = dataset_folder(benchmark, key="bench_folder")
except ValueError as exc:
    show_error(exc)
    st.stop()

problem = dataset_problem(benchmark, folder, variants, challenge)
if problem:
    st.warning(problem)
    st.stop()

key = benchmark_job_key(benchmark, models, folder, grid, variants, challenge)
table = job_panel(
    lambda: find_benchmark_job(key),
    lambda: submit_benchmark(benchmark, models, folder, grid, variants, challenge),
    key="bench", button_key="bench_compute",
    label=f"Evaluate {', '.join(m.name for m in models)} ({len(grid.conditions())} conditions)",
    failure="The evaluation failed",
    help="Runs in the background; finished chunks of images are kept on disk, so a cancelled "
         "or interrupted evaluation continues where it stopped.",
    hint="Press the button to score every image under every condition (one network pass per "
         "batch of images scores all of them).")

if table is not None:
    fig = benchmark_figure(benchmark, table)
    st.plotly_chart(fig, key="bench_fig")
    if benchmark == "shape-texture":
        st.caption("Shape (texture) accuracy: conflict images decided as their shape (texture) "
                   "category, over all images; shape bias: shape / (shape + texture). α = 0 is "
                   "the intact network, shared by both signs.")
    else:
        st.caption(f"Accuracy: top-1 ImageNet class mapped to the nine classes; grey dotted line: "
                   f"chance ({CHANCE:.3f}). BG-gap: Mixed-Same − Mixed-Rand. Challenge: "
                   "foregrounds classified correctly on every background.")
    export_panel(fig, name=f"{name}_{benchmark}_ablation", key="bench_export")
    st.dataframe(table, hide_index=True, height=260, key="bench_table")
