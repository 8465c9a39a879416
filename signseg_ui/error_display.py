"""The one place that turns exceptions into ``st.error``: the engine's own message for errors
written for the user, the type and a traceback for anything else."""

from __future__ import annotations

import logging
import traceback

import streamlit as st

from signseg_core.errors import SignsegError

log = logging.getLogger(__name__)

#: Errors whose message is written for the user; anything else also shows its traceback.
USER_ERRORS = (SignsegError, ValueError, KeyError, FileNotFoundError, NotADirectoryError,
               PermissionError)


def error_message(exc: BaseException) -> str:
    """The one-line message of an exception (a ``KeyError``'s without the repr quotes)."""
    if isinstance(exc, KeyError) and not isinstance(exc, SignsegError) and len(exc.args) == 1:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def error_details() -> str:
    """How much of an unexpected error a visitor may see, as Streamlit's own
    ``client.showErrorDetails`` says: ``"full"``, ``"stacktrace"``, ``"type"`` or ``"none"``
    (the deprecated ``True``/``False`` read as ``"full"``/``"stacktrace"``, Streamlit's mapping)."""
    value = st.get_option("client.showErrorDetails")
    if isinstance(value, bool):
        return "full" if value else "stacktrace"
    return str(value).lower()


def show_error(exc: BaseException, *, context: str = "") -> None:
    """Show ``exc`` as ``st.error``: the engine's own message for a user error; for anything
    else as much as ``client.showErrorDetails`` allows (the operator's choice: a served
    dashboard sets ``none``): the message and a traceback (``full``), the type and a traceback
    (``stacktrace``), the type (``type``), or one generic sentence (``none``). The full error
    always goes to the server's log."""
    prefix = f"{context}: " if context else ""
    if isinstance(exc, USER_ERRORS):
        st.error(prefix + error_message(exc))
        return
    log.exception("unexpected error in the dashboard", exc_info=exc)
    details = error_details()
    if details == "full":
        st.error(f"{prefix}{type(exc).__name__}: {exc}")
    elif details in ("stacktrace", "type"):
        st.error(f"{prefix}{type(exc).__name__} (details are in the server's log)")
    else:
        st.error(f"{prefix}an unexpected error; the server's log has the details")
    if details in ("full", "stacktrace"):
        with st.expander("Traceback"):
            st.code("".join(traceback.format_exception(exc)), language="text")
