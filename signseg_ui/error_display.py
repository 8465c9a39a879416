"""The one place that turns exceptions into ``st.error``: the engine's own message for errors
written for the user, the type and a traceback for anything else."""

from __future__ import annotations

import logging
import traceback

import streamlit as st

from signseg_core.errors import SignsegError

log = logging.getLogger(__name__)

#: Errors whose message is written for the user; anything else also shows its traceback.
USER_ERRORS = (SignsegError, ValueError, KeyError, FileNotFoundError)


def error_message(exc: BaseException) -> str:
    """The one-line message of an exception (a ``KeyError``'s without the repr quotes)."""
    if isinstance(exc, KeyError) and not isinstance(exc, SignsegError) and len(exc.args) == 1:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def show_error(exc: BaseException, *, context: str = "") -> None:
    """Show ``exc`` as ``st.error``: the engine's own message, or the type and a traceback."""
    prefix = f"{context}: " if context else ""
    if isinstance(exc, USER_ERRORS):
        st.error(prefix + error_message(exc))
        return
    log.exception("unexpected error in the dashboard", exc_info=exc)
    st.error(f"{prefix}{type(exc).__name__}: {exc}")
    with st.expander("Traceback"):
        st.code("".join(traceback.format_exception(exc)), language="text")
