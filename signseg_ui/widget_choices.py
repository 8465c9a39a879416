"""Widget choices kept valid across reruns, kept across pages, and kept in the URL
(``?unit=373&sign=negative``), so that a copied URL reopens the same view; a URL value that does
not parse is an error message, never a crash."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

#: Session key of ``{widget key: the page that last drew it}`` (:func:`carry_across_pages`).
DRAWN_ON = "_widget_pages"


def current_page() -> str:
    """An id of the page running now (its script hash; ``""`` outside a Streamlit run)."""
    ctx = get_script_run_ctx()
    return "" if ctx is None else str(ctx.page_script_hash)


def carry_across_pages(keys: Sequence[str]) -> None:
    """Before the widgets ``keys`` are drawn: when another page drew them last, give this page's
    widgets the values the session holds.

    Streamlit gives a keyed widget a new id on each page. ``persist_state="session"`` keeps the
    value under the key, but the first time the widget is drawn on a second page it is created
    afresh and the browser is told its default (1, ``""``, ``[]``), which it then sends back.
    Writing each value back under its key makes the new widget start from it. Only on a change
    of page: on every rerun it would also undo an edit not yet applied in a form.
    """
    page = current_page()
    drawn = st.session_state.setdefault(DRAWN_ON, {})
    for key in keys:
        if key in st.session_state and drawn.get(key, page) != page:
            st.session_state[key] = st.session_state[key]
        drawn[key] = page


def keep_choice(key: str, options: Sequence, default) -> None:
    """Before widget ``key`` is drawn: set it to ``default`` when its remembered value is not
    among ``options`` (a first visit, or options that changed with the model or data)."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = default


def restore_choice(key: str, param: str, options: Sequence, parse: Callable, default) -> None:
    """Set widget ``key``'s value before it is drawn: the session's remembered choice, else the
    URL's ``?param=``, else ``default``. A URL value that does not parse (or is not among
    ``options``) shows an ``st.error`` and falls back to ``default``."""
    for value in (st.session_state.get(key), st.session_state.get(f"_{key}")):
        if value is not None and value in options:
            st.session_state[key] = value
            return
    value, raw = default, st.query_params.get(param)
    if raw is not None:
        try:
            value = parse(raw)
            if value not in options:
                raise ValueError(f"{value!r} is not offered here")
        except ValueError as exc:
            st.error(f"Cannot open ?{param}={raw}: {exc}. Showing {default} instead.")
            value = default
    st.session_state[key] = value


def remember_choice(key: str, param: str, text: str) -> None:
    """Keep widget ``key``'s value across pages and write it to the URL as ``?param=text``."""
    st.session_state[f"_{key}"] = st.session_state[key]
    if st.query_params.get(param) != text:
        st.query_params[param] = text
