"""The Weight dynamics page's sections (paper Fig 25): where the checkpoints come from, the
settings, the background computation, and the figures with their exports.

A visitor's checkpoints arrive by upload (bounded, written into a folder of the server's own by
:func:`~signseg_core.analyses.dynamics_files.save_checkpoint_upload`) or are the built-in demo (a
tiny network trained here, labelled as such); a folder on the server is offered only where the
operator turned server paths on (:mod:`signseg_ui.serving`). Widget keys: ``dynamics_demo``,
``dynamics_upload``, ``dynamics_upload_load``; with server paths on ``dynamics_folder`` and
``dynamics_folder_load``; settings ``dynamics_threshold``, ``dynamics_arch``, ``dynamics_bins``;
results ``dynamics_scatter``, ``dynamics_spread``, ``dynamics_channels``, ``dynamics_curves``,
``dynamics_table``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from signseg_core.analyses.dynamics import (
    DEFAULT_THRESHOLD,
    WeightDynamics,
    dynamics_key,
    stored_dynamics,
    weight_dynamics,
)
from signseg_core.analyses.dynamics_files import (
    CHECKPOINT_SUFFIXES,
    DEMO_EPOCHS,
    MAX_UPLOAD_CHECKPOINTS,
    list_checkpoints,
    save_checkpoint_upload,
    write_demo_checkpoints,
)
from signseg_core.analyses.dynamics_stats import (
    DEFAULT_BINS,
    analysed_channels,
    convergence_correlation,
    dale_bins,
    describe_windows_test,
    narrower_windows_test,
)
from signseg_core.figures.dynamics_plots import (
    convergence_scatter_figure,
    similarity_curves_figure,
    spread_by_bin_figure,
)
from signseg_core.jobs import Job, default_manager
from signseg_core.metrics.stats import describe_correlation
from signseg_core.models.registry import registry
from signseg_core.store import default_store

from .error_display import show_error
from .export_widgets import export_panel
from .jobs_widget import job_panel
from .serving import data_roots, server_path, server_paths_enabled, shown_path

#: ``st.session_state`` keys: the checkpoint folder in use with its label, and the last error.
SOURCE, SOURCE_ERROR = "_dynamics_source", "_dynamics_source_error"
#: The demo's options (tests shorten it).
DEMO_OPTIONS = {"epochs": DEMO_EPOCHS, "seed": 0}
OWN_LAYERS = "(the checkpoints' own Conv2d/Linear weights)"


def demo_label() -> str:
    return (f"the built-in demo: a 4-layer network (3 convolutions, 1 linear) trained here for "
            f"{DEMO_OPTIONS['epochs']} epochs on 256 synthetic 16-px images (not the paper's "
            "ResNet18 on ImageNet)")


def choose(loader, label: str, *, demo: bool = False) -> None:
    """Take the folder ``loader()`` returns as the source (its checkpoints listed now, so a bad
    folder is one sentence at once), or keep the error."""
    try:
        folder = loader()
        list_checkpoints(folder)
    except Exception as exc:  # the UI layer turns engine errors into messages
        st.session_state[SOURCE_ERROR] = exc
        return
    st.session_state[SOURCE] = {"folder": str(folder), "label": label, "demo": demo}
    st.session_state.pop(SOURCE_ERROR, None)


def upload_section() -> None:
    files = st.file_uploader(
        f"Checkpoints of one network, one file per epoch (at most {MAX_UPLOAD_CHECKPOINTS})",
        type=[s.lstrip(".") for s in CHECKPOINT_SUFFIXES], accept_multiple_files=True,
        key="dynamics_upload",
        help="State dicts (torch.save(model.state_dict()), plain or under 'model' or "
             "'state_dict') or .safetensors; each name carries its epoch (epoch_1.pt ...). "
             "Pickles are read weights-only: nothing in them is run.")
    if st.button("Use the uploaded checkpoints", key="dynamics_upload_load",
                 disabled=not files):
        choose(lambda: save_checkpoint_upload([(f.name, f.getvalue()) for f in files]),
               f"{len(files)} uploaded checkpoints")


def source_section() -> dict | None:
    """The demo button, the uploader and, where turned on, a server folder; the source in use
    (``{"folder", "label", "demo"}``) or None."""
    if st.button("Use the built-in demo", key="dynamics_demo", help=demo_label()):
        with st.spinner("Training the demo network (once; kept in the cache)…"):
            choose(lambda: write_demo_checkpoints(**DEMO_OPTIONS), demo_label(), demo=True)
    upload_section()
    if server_paths_enabled():
        roots = ", ".join(str(r) for r in data_roots())
        st.text_input(f"Or a checkpoint folder on this server, inside {roots}",
                      key="dynamics_folder")
        if st.button("Use this folder", key="dynamics_folder_load"):
            text = st.session_state.get("dynamics_folder", "")
            choose(lambda: server_path(text, what="checkpoint folder"), f"the folder {text}")
    if SOURCE_ERROR in st.session_state:
        show_error(st.session_state[SOURCE_ERROR], context="Cannot use these checkpoints")
    return st.session_state.get(SOURCE)


def settings_section() -> tuple[float, str, int]:
    """``(threshold, arch, bins)`` from the settings widgets."""
    left, middle, right = st.columns(3)
    threshold = left.number_input(
        "Converged at this fraction of the final similarity", min_value=0.05, max_value=1.0,
        value=DEFAULT_THRESHOLD, step=0.05, key="dynamics_threshold",
        help="The paper: 90 %. The convergence epoch is the first checkpoint at or above it.")
    names = [OWN_LAYERS, *sorted(registry())]
    arch = middle.selectbox("Architecture naming the layers", names, key="dynamics_arch",
                            help="Needed for grouped or depthwise convolutions, whose groups a "
                                 "state dict does not record.")
    bins = right.number_input("Dale-index bins", min_value=1, max_value=20, value=DEFAULT_BINS,
                              step=1, key="dynamics_bins")
    return float(threshold), "" if arch == OWN_LAYERS else str(arch), int(bins)


def job_key(folder: str, threshold: float, arch: str):
    return ("weight-dynamics", dynamics_key(list_checkpoints(folder), threshold=threshold,
                                            arch=arch))


def find_job(folder: str, threshold: float, arch: str) -> Job | None:
    return default_manager().get(job_key(folder, threshold, arch), cancelling=True)


def submit(folder: str, threshold: float, arch: str) -> Job:
    """Run the analysis in the background; every checkpoint's step goes into the store."""
    def run(progress, should_stop):
        return weight_dynamics(folder, threshold=threshold, arch=arch, store=default_store(),
                               progress=progress, should_stop=should_stop)

    return default_manager().submit(job_key(folder, threshold, arch), run,
                                    label="Weight dynamics")


def computed(source: dict, threshold: float, arch: str) -> WeightDynamics | None:
    """The stored result, else the Compute button / progress / Cancel of its job; the result
    once there, else None."""
    folder = source["folder"]
    paths = list_checkpoints(folder)
    found = stored_dynamics(default_store(), dynamics_key(paths, threshold=threshold, arch=arch))
    if found is not None:
        return found
    return job_panel(lambda: find_job(folder, threshold, arch),
                     lambda: submit(folder, threshold, arch), key="dynamics",
                     label=f"Compute the weight dynamics ({len(paths)} checkpoints)",
                     failure="The weight dynamics could not be computed")


def summary_caption(result: WeightDynamics, source: dict) -> str:
    table = result.table
    label = source["label"].replace(source["folder"], shown_path(source["folder"]))
    return (f"{label}: {len(result.files)} checkpoints ({result.files[0]} … "
            f"{result.files[-1]}), epochs {result.epochs[0]:g}–{result.epochs[-1]:g} from "
            f"{result.epoch_source}; {len(table)} channels in {table['layer'].nunique()} layers.")


def scatter_section(result: WeightDynamics) -> None:
    corr = convergence_correlation(result.table)
    fig = convergence_scatter_figure(result.table, corr)
    st.plotly_chart(fig, key="dynamics_scatter")
    st.caption(describe_correlation(corr, items="channels")
               + (f" {corr['n_left_out']} channel(s) with all-zero final weights left out."
                  if corr["n_left_out"] else ""))
    export_panel(fig, name="weight_dynamics_scatter", key="dynamics_scatter_export")


def spread_section(result: WeightDynamics, bins: int) -> None:
    part = analysed_channels(result.table)
    edges, index = dale_bins(part["dale_index"].to_numpy(float), bins=bins)
    test = narrower_windows_test(result.table, bins=bins)
    fig = spread_by_bin_figure(part, edges, index, test)
    st.plotly_chart(fig, key="dynamics_spread")
    st.caption(describe_windows_test(test))
    export_panel(fig, name="weight_dynamics_spread", key="dynamics_spread_export")


def curves_section(result: WeightDynamics) -> None:
    labels = result.channel_labels()
    order = np.argsort(result.table["convergence_epoch"].to_numpy(float), kind="stable")
    default = [labels[i] for i in (*order[:2], *order[-2:])] if len(order) >= 4 else labels
    chosen = st.multiselect("Channels", labels, default=default, key="dynamics_channels",
                            max_selections=12,
                            help="Default: the two earliest and the two latest to converge.")
    rows = [labels.index(label) for label in chosen]
    fig = similarity_curves_figure(result.similarity, result.epochs, labels, rows,
                                   threshold=result.threshold)
    st.plotly_chart(fig, key="dynamics_curves")
    export_panel(fig, name="weight_dynamics_curves", key="dynamics_curves_export")
