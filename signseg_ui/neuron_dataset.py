"""The Neuron models page's data section: the demo dataset, uploads, and, only where the operator
turned them on (:mod:`signseg_ui.serving`), paths on the server.

A visitor loads data by upload: a responses file (``.csv`` or ``.npz``) and its images (a zip of
the image folder, or the image files), each within ``server.maxUploadSize``, checked as any file
is (:func:`~signseg_core.neurons.data.load_neuron_data`). ``?data=demo`` opens the demo dataset;
``?data=<path>`` opens a file on the server only when server paths are on and it lies under a
data root. Widget keys: ``neurons_demo``, ``neurons_upload_responses``,
``neurons_upload_images``, ``neurons_upload_load``; with server paths on also ``neurons_path``,
``neurons_images`` and ``neurons_load``.
"""

from __future__ import annotations

import streamlit as st

from signseg_core.neurons.uploads import IMAGE_SUFFIXES

from .error_display import show_error
from .neurons import (
    QUERY_DATA,
    SESSION_DATA,
    choose_data,
    choose_server_data,
    choose_upload,
    demo_dataset,
)
from .serving import data_roots, server_paths_enabled

#: ``st.session_state`` key of the last dataset error (Markdown), shown until the next load.
DATA_ERROR = "_neurons_data_error"
#: ``?data=`` value that opens the demo dataset (always allowed: the server writes it).
DEMO_LINK = "demo"
_LINK_READ = "_neurons_link_read"


def use_demo_dataset() -> None:
    """Write the demo dataset (once, with a progress bar) and load it."""
    bar = st.progress(0.0, text="Writing the demo dataset…")
    try:
        csv = demo_dataset(progress=lambda d, n: bar.progress(d / n, text=f"features {d}/{n}"))
    except Exception as exc:  # the UI layer turns engine errors into messages
        show_error(exc, context="Cannot write the demo dataset")
        st.stop()
    bar.empty()
    st.session_state[DATA_ERROR] = choose_data(str(csv), name="the demo dataset")
    if st.session_state[DATA_ERROR] is None:
        st.query_params[QUERY_DATA] = DEMO_LINK


def read_link() -> None:
    """A first visit's ``?data=``: the demo, or a server file where server paths are on."""
    link = st.query_params.get(QUERY_DATA)
    if st.session_state.get(_LINK_READ) or SESSION_DATA in st.session_state or not link:
        return
    st.session_state[_LINK_READ] = True
    if link == DEMO_LINK:
        use_demo_dataset()
    elif server_paths_enabled():
        st.session_state["neurons_path"] = link
        st.session_state[DATA_ERROR] = choose_server_data(link)
    else:
        st.query_params.pop(QUERY_DATA, None)
        st.session_state[DATA_ERROR] = ("Links to files on the server are turned off on this "
                                        "dashboard: upload the responses file and its images.")


def upload_section() -> None:
    """The two uploaders and their Load button."""
    left, right = st.columns(2)
    responses = left.file_uploader(
        "Responses (.csv or .npz)", type=["csv", "npz"], key="neurons_upload_responses",
        help="CSV: one row per (image, neuron) with columns image, neuron, response and "
             "optionally session, area, monkey. NPZ: responses (n_images, n_neurons) and "
             "images. Image names are relative to the image folder.")
    images = right.file_uploader(
        "Images (a .zip of the image folder, or the image files)",
        type=["zip", *(s.lstrip(".") for s in IMAGE_SUFFIXES)], accept_multiple_files=True,
        key="neurons_upload_images",
        help="A zip keeps its folders (names in the responses are relative to the zip's root); "
             "image files are taken by name.")
    if st.button("Load the uploaded files", key="neurons_upload_load", type="primary",
                 disabled=responses is None or not images):
        st.session_state[DATA_ERROR] = choose_upload(responses, images)


def server_path_section() -> None:
    """Text boxes for a responses file and an image folder under the data roots, and Load."""
    roots = ", ".join(str(r) for r in data_roots())
    st.caption(f"Or files on this server, inside {roots}:")
    col_path, col_images = st.columns(2)
    col_path.text_input("Responses file on the server (.csv or .npz)", key="neurons_path")
    col_images.text_input("Images folder on the server", key="neurons_images",
                          placeholder="default: the responses file's folder")
    if st.button("Load", key="neurons_load"):
        st.session_state[DATA_ERROR] = choose_server_data(
            st.session_state.get("neurons_path", ""), st.session_state.get("neurons_images", ""))


def dataset_section() -> tuple[str, str] | None:
    """The demo button, the uploads, server paths where turned on; the dataset in use, or None.
    A failed load shows its problems (server paths by name only, unless turned on)."""
    read_link()
    if st.button("Use the demo dataset", key="neurons_demo",
                 help="Synthetic neurons planted on EfficientNet-Lite0 features of 120 images; "
                      "written once into the cache folder."):
        use_demo_dataset()
    upload_section()
    if server_paths_enabled():
        server_path_section()
    if st.session_state.get(DATA_ERROR):
        st.error(st.session_state[DATA_ERROR])
    return st.session_state.get(SESSION_DATA)
