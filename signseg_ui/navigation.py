"""The dashboard's page list and the sidebar links every page draws."""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

#: The dashboard's pages in sidebar order: (script, label). Streamlit's own list would call the home
#: page "app" (the file's name), so ``.streamlit/config.toml`` hides it and every page draws this
#: one. (``st.navigation`` would name pages too, but with a ``pages/`` folder next to ``app.py``
#: a fresh server answers a first request for ``/Dale_index`` the old way, with the old names.)
PAGES = (
    ("app.py", "Home"),
    ("pages/0_Ablation_explorer.py", "Ablation explorer"),
    ("pages/1_Dale_index.py", "Dale index"),
    ("pages/2_Dale_ranked_channels.py", "Dale-ranked channels"),
    ("pages/3_Compare_models.py", "Compare models"),
    ("pages/4_Export.py", "Export"),
    ("pages/5_Neuron_models.py", "Neuron models"),
    ("pages/6_Shape_and_background.py", "Shape and background"),
    ("pages/7_Weight_dynamics.py", "Weight dynamics"),
    ("pages/8_Training_runs.py", "Training runs"),
)


def sidebar_nav() -> None:
    """Links to every page in the sidebar, titled; called at the top of each page.

    A page run on its own (``AppTest.from_file("pages/...")``) knows no other page; it then gets
    no links rather than an error.
    """
    with st.sidebar:
        for script, label in PAGES:
            try:
                st.page_link(script, label=label)
            except StreamlitAPIException:
                return
