"""One widget for a background computation's whole life cycle on a page.

:func:`job_panel` finds the job computing what the page wants (any session may have submitted
it), hands back a finished job's result, offers a Compute button while nothing computes it, shows
progress with the time left and a Cancel button while it runs, and the error when it failed::

    found = stored_results(request)
    missing = N_CONDITIONS - len(found)
    finished = job_panel(lambda: unit_job(request), lambda: submit_unit(request),
                         key="explorer", label=f"Compute unit {unit} ({missing} conditions)",
                         needed=missing > 0)
    found = {**results_by_key(finished or []), **found}

Widget keys: the button ``<key>_compute`` (or ``button_key``); while a job runs,
``<key>_job_refresh`` and ``<key>_job_cancel``.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from signseg_core.jobs import Job, default_manager


@st.fragment(run_every=2)
def _job_progress(job: Job) -> None:
    eta = job.eta_s()
    text = f"{job.label} — {job.state}" + (f", {job.message}" if job.message else "")
    st.progress(job.progress, text=text + (f", about {eta:.0f} s left" if eta else ""))
    if job.is_finished:
        st.rerun()  # the whole page, which now shows the result


def show_job(job: Job, *, key: str) -> None:
    """Progress of an active job, refreshed every 2 s, with Refresh and Cancel buttons
    (keys ``<key>_refresh`` and ``<key>_cancel``)."""
    _job_progress(job)
    left, right, _ = st.columns([1, 1, 6])
    left.button("Refresh", key=f"{key}_refresh")
    if right.button("Cancel", key=f"{key}_cancel"):
        job.cancel()
        st.rerun()


@st.fragment(run_every=3)
def running_jobs(*, key: str) -> None:
    """A table of every queued and running job of this server (the dataframe's key: ``key``),
    refreshed every 3 s."""
    jobs = [job.info() for job in default_manager().jobs(active_only=True)]
    if jobs:
        st.dataframe(pd.DataFrame(jobs), hide_index=True, width="stretch", key=key)
    else:
        st.caption("No computations running.")


def job_panel(find_job: Callable[[], Job | None], submit: Callable[[], Job], *, key: str,
              label: str, needed: bool = True, button_key: str | None = None,
              help: str | None = None, primary: bool = True, hint: str = "",
              failure: str = "The computation failed", keep_button: bool = False):
    """The Compute button, progress, Cancel and failure of one background computation.

    Parameters
    ----------
    find_job : returns the job computing the work if any session submitted one, else None.
    submit : starts the work in the background (shared with identical requests) and returns its
        job; called when the button is pressed.
    key : prefix of the widget keys (see the module docstring).
    label : the button's label, e.g. ``"Compute unit 373 (21 conditions)"``.
    needed : False when everything is shown already (stored): no button, progress or failure.
    button_key : the button's key instead of ``<key>_compute``.
    help, primary : the button's tooltip, and whether it is the page's primary button.
    hint : an ``st.info`` line beneath the button while it is offered.
    failure : the start of the error shown when the job failed (its error follows).
    keep_button : keep the button in place, disabled, while a job runs, after one finished or
        failed, or when nothing is ``needed`` (instead of hiding it).

    Returns
    -------
    The result of a job that finished (to merge into what the page shows), or None.
    """
    job = find_job()
    offered = needed and (job is None or job.state == "cancelled")
    if (offered or keep_button) and st.button(
            label, key=button_key or f"{key}_compute", help=help, disabled=not offered,
            type="primary" if primary else "secondary"):
        job = submit()
    if job is not None and job.state == "done":
        return job.result()
    if not needed:
        return None
    if job is not None and job.is_active:
        show_job(job, key=f"{key}_job")
    elif job is not None and job.state == "failed":
        st.error(f"{failure}: {job.error}")
    elif hint:  # nothing computes it: the button is offered
        st.info(hint)
    return None
