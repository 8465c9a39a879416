"""signseg dashboard: the home page (``make run``, or ``streamlit run app.py``).

What signseg does, the model zoo with weight status, the device, the store, running jobs. The
other pages live in ``pages/``; every computation lives in ``signseg_core``.
"""

from __future__ import annotations

import streamlit as st

from signseg_core import paths
from signseg_core.figures.plots import readout_dale_histogram
from signseg_core.signs import dale_index, expected_untrained_dale_index
from signseg_core.store import default_store
from signseg_core.sweeps.ray_jobs import describe_cluster
from signseg_ui.cached_models import require_model
from signseg_ui.device import device_choices, device_picker
from signseg_ui.export_widgets import export_panel
from signseg_ui.jobs_widget import cluster_progress, running_jobs
from signseg_ui.navigation import sidebar_nav
from signseg_ui.pickers import model_picker, models_table
from signseg_ui.serving import hide_host_paths, host_paths_visible

st.set_page_config(page_title="signseg", layout="wide")
sidebar_nav()

st.title("signseg")
st.write(
    "What do the positive and the negative weights of a vision network each encode? "
    "signseg ablates a unit's positive or negative input weights, finds the unit's preferred "
    "images before and after, and measures what changed."
)
st.page_link("pages/0_Ablation_explorer.py", icon="👉",
             label="Start here: the Ablation explorer — pick a unit, drag α and watch its "
                   "preferred image change as its positive or its negative weights are removed.")

table = models_table()
choice = model_picker(key="home_model")

model = require_model(choice)

di = dale_index(model.readout.weight.detach())
n_out = model.readout.out_features
col1, col2, col3 = st.columns(3)
col1.metric("Readout Dale index (mean)", f"{di.mean().item():.4f}")
expected = expected_untrained_dale_index(n_out)
col2.metric(f"Untrained expectation ({n_out} outgoing weights)", f"{expected:.4f}")
col3.metric("Readout size", f"{model.n_features} → {n_out}")
st.caption(
    hide_host_paths(f"{model.name}: weights {model.weights_source}; fingerprint "
                    f"{model.fingerprint[:16]}; cache at {paths.cache_dir()}")
)
hist = readout_dale_histogram(model)
st.plotly_chart(hist, key="home_dale_hist")
export_panel(hist, name=f"{model.name}_readout_dale_hist", key="home_hist_export")

st.subheader("Model zoo")
st.dataframe(table, hide_index=True, width="stretch",
             column_config={"top1": st.column_config.NumberColumn("top-1 %", format="%.1f")})
st.caption(
    "Missing weights: torchvision models load from the torch hub cache "
    "($TORCH_HOME/hub/checkpoints); robust ResNet50s, ResNet18-Tanh and SimSiam go under "
    f"{paths.weights_dir()}."
)

st.subheader("This machine")
store = default_store()
c1, c2, c3 = st.columns(3)
with c1:
    device = device_picker(key="home_device")
c2.metric("Stored results", f"{len(store)} entries")
c3.metric("Cache size", f"{store.size_bytes() / 2**20:.1f} MiB")
note = "" if len(device_choices()) > 1 else " No CUDA GPU is visible to this process."
st.caption(hide_host_paths(f"Result store: {store.directory}. Models run on the "
                           f"{device_choices()[device]} when the dashboard computes.{note} "
                           f"{describe_cluster(show_address=host_paths_visible())}"))


st.subheader("Running jobs")
running_jobs(key="home_jobs")
cluster_progress(key="home_cluster")
