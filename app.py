"""signseg dashboard: the entry point (``make run``, or ``streamlit run app.py``).

It names the pages and their order; each page lives in ``pages/`` and every computation in
``signseg_core``. URL paths stay those of the page files (``/Ablation_explorer``, ...), so
shared links keep working.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="signseg", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", default=True),
    st.Page("pages/0_Ablation_explorer.py", title="Ablation explorer",
            url_path="Ablation_explorer"),
    st.Page("pages/1_Dale_index.py", title="Dale index", url_path="Dale_index"),
    st.Page("pages/2_Dale_ranked_channels.py", title="Dale-ranked channels",
            url_path="Dale_ranked_channels"),
    st.Page("pages/3_Compare_models.py", title="Compare models", url_path="Compare_models"),
    st.Page("pages/4_Export.py", title="Export", url_path="Export"),
]

st.navigation(PAGES).run()
