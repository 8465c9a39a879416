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

import time
import uuid
from collections.abc import Callable

import pandas as pd
import streamlit as st

from signseg_core.jobs import Job, default_manager
from signseg_core.sweeps.cluster import cluster_sweeps


#: ``st.session_state`` keys: this browser session's watcher id, and the ids of the jobs it let go
#: of with Cancel.
SESSION_ID, RELEASED = "_jobs_session_id", "_jobs_released"


def session_id() -> str:
    """This browser session's watcher id (made once per session)."""
    if SESSION_ID not in st.session_state:
        st.session_state[SESSION_ID] = uuid.uuid4().hex
    return st.session_state[SESSION_ID]


def progress_text(job: Job) -> str:
    """``"label — running, message, about 40 s left"``; ``"cancelling…"`` from the moment
    Cancel is pressed until the worker has stopped."""
    if job.cancel_requested and job.is_active:
        return f"{job.label} — cancelling…"
    eta = job.eta_s()
    text = f"{job.label} — {job.state}" + (f", {job.message}" if job.message else "")
    return text + (f", about {eta:.0f} s left" if eta is not None else "")


@st.fragment(run_every=2)
def _job_progress(job: Job, live: Callable[[Job], None] | None) -> None:
    job.seen(session_id())  # every refresh: this session still watches
    st.progress(job.progress, text=progress_text(job))
    if live is not None:
        live(job)
    if job.is_finished:
        st.rerun()  # the whole page, which now shows the result
    # A result stored while the job runs (the message counts them): show it on the page now.
    marker = f"_job_seen_{job.id}"
    if "stored" in job.message and st.session_state.get(marker) != job.message:
        first = marker not in st.session_state
        st.session_state[marker] = job.message
        if not first:
            st.rerun()


def let_go(job: Job) -> None:
    """This session's Cancel: it stops watching; the job is cancelled when no other session
    was seen watching it in the last 10 s (:meth:`~signseg_core.jobs.Job.leave`)."""
    st.session_state.setdefault(RELEASED, set()).add(job.id)
    job.leave(session_id())


def show_job(job: Job, *, key: str, live: Callable[[Job], None] | None = None) -> None:
    """Progress of an active job, refreshed every 2 s (with ``live(job)`` drawn beneath it,
    e.g. a preview image), and Refresh and Cancel buttons (keys ``<key>_refresh`` and
    ``<key>_cancel``). Cancel lets go of the job for this session; it stops when no other
    session watches it, and says so when others still do."""
    if job.id in st.session_state.get(RELEASED, set()) and not job.cancel_requested:
        others = len(job.watchers())
        st.info(f"You cancelled; {others} other session{'s' * (others != 1)} still "
                f"watch{'es' * (others == 1)} this computation, so it goes on for them.")
        if st.button("Watch it again", key=f"{key}_rewatch"):
            st.session_state[RELEASED].discard(job.id)
            st.rerun()
        return
    _job_progress(job, live)
    left, right, _ = st.columns([1, 1, 6])
    left.button("Refresh", key=f"{key}_refresh")
    if right.button("Cancel", key=f"{key}_cancel", disabled=job.cancel_requested):
        let_go(job)
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


@st.fragment(run_every=5)
def cluster_progress(*, key: str, clock: Callable[[], float] = time.time) -> None:
    """Cluster sweeps (``sweep --cluster``) that this machine's drivers ran in the last hours, as
    their records say (:func:`~signseg_core.sweeps.cluster.cluster_sweeps`), refreshed every
    5 s; nothing when there are none."""
    records = cluster_sweeps(clock=clock)
    if not records:
        return
    now = clock()
    st.dataframe(pd.DataFrame([{
        "sweep": r["sweep"], "units evolved": f"{r['units_done']}/{r['units_total']}",
        "images/s": r["images_per_s"], "state": r["state"],
        "updated": f"{now - r['updated']:.0f} s ago"} for r in records]),
        hide_index=True, width="stretch", key=key)
    st.caption("Sweeps on a Ray cluster, from their drivers' records on this machine; a driver "
               "measures the metrics itself once its units are evolved.")


def job_panel(find_job: Callable[[], Job | None], submit: Callable[[], Job], *, key: str,
              label: str, needed: bool = True, button_key: str | None = None,
              help: str | None = None, primary: bool = True, hint: str = "",
              failure: str = "The computation failed", keep_button: bool = False,
              live: Callable[[Job], None] | None = None):
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
    live : drawn under the progress bar on every refresh while the job runs (``live(job)``).

    Returns
    -------
    The result of a job that finished (to merge into what the page shows), or None.
    """
    job = find_job()
    offered = needed and (job is None or job.state == "cancelled")
    if offered or keep_button:
        # Submitted in the click's callback, before the page reruns: the rerun finds the job
        # and shows its progress instead of a stale Compute button.
        st.button(label, key=button_key or f"{key}_compute", help=help, disabled=not offered,
                  type="primary" if primary else "secondary",
                  on_click=lambda: _submitted(submit()))
    if job is not None and job.state == "done":
        return job.result()
    if not needed:
        return None
    if job is not None and job.is_active:
        show_job(job, key=f"{key}_job", live=live)
    elif job is not None and job.state == "failed":
        st.error(f"{failure}: {job.error}")
    elif hint:  # nothing computes it: the button is offered
        st.info(hint)
    return None


def _submitted(job: Job) -> None:
    """The session that pressed Compute watches the job it submitted (or joined)."""
    job.seen(session_id())
    st.session_state.setdefault(RELEASED, set()).discard(job.id)
