"""Background jobs, so a page never blocks on a computation.

A :class:`JobManager` runs functions ``fn(progress, should_stop)`` on a few daemon worker threads
(torch releases the GIL while it computes). Requests with the same key share one job: a second
browser session asking for the same thing gets the same :class:`Job` and watches the same
progress. Cancellation is cooperative: ``cancel()`` makes ``should_stop()`` return True, and the
function is expected to return soon after (a job still queued is cancelled without running); a
page's Cancel is :meth:`Job.leave`, which cancels only when no other session still watches.

No Streamlit here: the dashboard holds :func:`default_manager` (e.g. in ``st.cache_resource``)
and polls ``job.state`` and ``job.progress`` from a fragment that reruns every second or so.
Workers are daemon threads, not a ``ThreadPoolExecutor`` (the interpreter joins its threads at
exit: stopping the server would wait for a long job).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Hashable
from typing import Any

from signseg_core.errors import SignsegError
from signseg_core.store import key_digest

log = logging.getLogger(__name__)

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = frozenset(("done", "failed", "cancelled"))

#: ``progress(done, total, message="", payload=None)`` as handed to a job's function; a payload
#: (e.g. a live preview) is kept as :attr:`Job.latest`.
ProgressFn = Callable[..., None]
JobFn = Callable[[ProgressFn, Callable[[], bool]], Any]


class JobCancelled(SignsegError):
    """The job was cancelled before it finished; it has no result."""


class Job:
    """One background computation and its observable state.

    Attributes: ``id``, ``key`` (hex digest of the submitted key), ``label``, ``state`` (one of
    :data:`STATES`), ``done`` / ``total`` / ``message`` (the last progress report),
    ``submitted`` / ``started`` / ``finished`` (``clock()`` times, None until reached),
    ``subscribers``, ``error`` (``"TypeName: message"`` of a failure, else ``""``), ``traceback``,
    ``expected_s`` (the submitter's estimate of the run time) and ``latest`` (the last payload
    reported with progress, e.g. a live preview; None until one).
    """

    def __init__(self, key: str, fn: JobFn, *, label: str, job_id: str,
                 clock: Callable[[], float], expected_s: float | None = None):
        self.id, self.key, self.label = job_id, key, label
        self._fn: JobFn | None = fn
        self._clock = clock
        self._lock = threading.Lock()
        self._finished_event = threading.Event()
        self._stop = threading.Event()
        self.state = "queued"
        self.done, self.total, self.message = 0, 0, ""
        self.submitted: float = clock()
        self.started: float | None = None
        self.finished: float | None = None
        self.subscribers = 1
        self.error = self.traceback = ""
        self.expected_s = expected_s
        self.latest: Any = None
        self._seen: dict[str, float] = {}  # watcher -> clock() when last seen
        self._first_report: tuple[float, int] | None = None  # (time, done) of the first report
        self._value: Any = None
        self._exception: BaseException | None = None

    # -- observing ----------------------------------------------------------------------------
    @property
    def progress(self) -> float:
        """Fraction done in [0, 1]: ``done / total`` of the last report, 1 once done."""
        with self._lock:
            state, done, total = self.state, self.done, self.total
        if state == "done":
            return 1.0
        return min(max(done / total, 0.0), 1.0) if total > 0 else 0.0

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED

    @property
    def is_active(self) -> bool:  # queued or running
        return self.state not in FINISHED

    @property
    def cancel_requested(self) -> bool:
        """True once :meth:`cancel` was called (a running job may still be winding down)."""
        return self._stop.is_set()

    def elapsed_s(self) -> float:
        """Seconds since the job started running (to its end once finished); 0 while queued."""
        if self.started is None:
            return 0.0
        end = self.finished if self.finished is not None else self._clock()
        return max(end - self.started, 0.0)

    def eta_s(self) -> float | None:
        """Seconds left, or None while unknown. Running: the work left at the rate since the
        first progress report (start-up such as loading a model is not work), once a second has
        passed; before that ``expected_s`` less the time run (never below 0), else the rate since
        the start. Queued: ``expected_s``. Frequent reports keep the estimate counting down."""
        with self._lock:
            state, done, total, first = self.state, self.done, self.total, self._first_report
        if state != "running":
            return self.expected_s if state == "queued" else None
        now = self._clock()
        if first is not None and total > 0 and now - first[0] >= 1.0 and done > first[1]:
            rate = (done - first[1]) / (now - first[0])
            return max(total - done, 0) / rate
        if self.expected_s is not None:
            return max(self.expected_s - self.elapsed_s(), 0.0)
        fraction = done / total if total > 0 else 0.0  # last resort: the rate since the start
        return self.elapsed_s() * (1 - fraction) / fraction if fraction > 0 else None

    def info(self) -> dict:
        """A plain dict for a table of jobs: id, label, state, progress, message, times."""
        eta = self.eta_s()
        return {"id": self.id, "label": self.label, "state": self.state,
                "progress": round(self.progress, 4), "done": self.done, "total": self.total,
                "message": self.message, "elapsed_s": round(self.elapsed_s(), 1),
                "eta_s": None if eta is None else round(eta, 1), "error": self.error,
                "subscribers": self.subscribers, "cancel_requested": self.cancel_requested}

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (True) or ``timeout`` seconds passed (False)."""
        return self._finished_event.wait(timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The function's return value, waiting up to ``timeout`` seconds (None: forever).

        Raises
        ------
        TimeoutError : not finished in time.
        JobCancelled : the job was cancelled.
        Exception : whatever the function raised, when it failed.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"job {self.id} ({self.label!r}) still {self.state}")
        if self.state == "cancelled":
            raise JobCancelled(f"job {self.id} ({self.label!r}) was cancelled")
        if self.state == "failed":
            raise self._exception  # type: ignore[misc]
        return self._value

    # -- controlling --------------------------------------------------------------------------
    def should_stop(self) -> bool:
        """What the function polls: True once the job is cancelled."""
        return self._stop.is_set()

    def cancel(self) -> bool:
        """Cancel outright, whoever else watches: a queued job ends now without running, a
        running one when its function returns. False if already finished."""
        with self._lock:
            return self._cancel_locked()

    def seen(self, watcher: str) -> None:
        """``watcher`` (a browser session's id) looks at the job now; pages call it on every
        refresh, so a closed tab stops counting after ``stale_s`` (:meth:`leave`)."""
        with self._lock:
            self._seen[watcher] = self._clock()

    def watchers(self, stale_s: float = 10.0) -> list[str]:
        """The watchers seen within the last ``stale_s`` seconds."""
        with self._lock:
            now = self._clock()
            return [w for w, t in self._seen.items() if now - t <= stale_s]

    def leave(self, watcher: str, stale_s: float = 10.0) -> bool:
        """``watcher`` cancels for itself; the job is cancelled when no other watcher was seen
        in the last ``stale_s`` seconds (a closed tab is not waited for). True if it was."""
        with self._lock:
            self._seen.pop(watcher, None)
            now = self._clock()
            if any(now - t <= stale_s for t in self._seen.values()):
                return False
            return self._cancel_locked()

    def release(self) -> None:
        """One watcher lets go (a session navigated away); the last one out cancels the job."""
        with self._lock:
            self.subscribers = max(self.subscribers - 1, 0)
            if self.subscribers == 0:
                self._cancel_locked()

    # -- used by the manager and the worker ---------------------------------------------------
    def _cancel_locked(self) -> bool:
        if self.state in FINISHED:
            return False
        self._stop.set()
        if self.state == "queued":
            self._finish("cancelled")
        return True

    def _reusable(self) -> bool:
        """Whether a new request for the same key may share this job."""
        return not self._stop.is_set() and self.state != "cancelled"

    def _subscribe(self) -> bool:
        """Join the job unless it is (being) cancelled: atomic with :meth:`release`."""
        with self._lock:
            if not self._reusable():
                return False
            self.subscribers += 1
            return True

    def _report(self, done: int, total: int, message: str = "", payload: Any = None) -> None:
        with self._lock:
            if self._first_report is None:
                self._first_report = (self._clock(), int(done))
            self.done, self.total, self.message = int(done), int(total), str(message)
            if payload is not None:
                self.latest = payload

    def _finish(self, state: str) -> None:  # call with the lock held
        self.state = state
        self.finished = self._clock()
        self._fn = None  # drop the closure (and the model it may hold)
        self._finished_event.set()

    def _run(self) -> None:
        """Run the function once; never raises."""
        with self._lock:
            if self.state != "queued":  # cancelled while it waited
                return
            self.state, self.started, fn = "running", self._clock(), self._fn
        value, outcome = None, "cancelled"
        try:
            value, outcome = fn(self._report, self.should_stop), "done"
        except JobCancelled:
            pass
        except BaseException as exc:  # a failing job must never take a worker down
            log.warning("job %s (%s) failed: %s: %s", self.id, self.label,
                        type(exc).__name__, exc)
            self._exception, outcome = exc, "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            self.traceback = "".join(traceback.format_exception(exc))
        with self._lock:
            if outcome == "done" and self._stop.is_set():
                outcome = "cancelled"  # the value may be partial: drop it
            self._value = value if outcome == "done" else None
            self._finish(outcome)

    def __repr__(self) -> str:
        return f"Job({self.id!r}, {self.label!r}, {self.state}, {self.progress:.0%})"


class JobManager:
    """Runs jobs on ``max_workers`` background threads; same key, same job.

    Parameters
    ----------
    max_workers : int >= 1
        Jobs running at once; more queue in submission order. One by default: on a 2-core CPU
        two evolutions at once are each half as fast, and on one GPU they compete for memory.
    keep_finished : int >= 0
        Finished jobs remembered (oldest forgotten first) so a session picks up its result on its
        next rerun. Results stay in memory: keep it small (visualizations are in the store).
    keep_seconds : float > 0 or None
        Finished jobs are also forgotten this long after finishing; None keeps them.
    clock : the time source of the jobs' timestamps (tests inject their own).
    """

    def __init__(self, max_workers: int = 1, *, keep_finished: int = 20,
                 keep_seconds: float | None = 900.0, clock: Callable[[], float] = time.time):
        for name, value, low in (("max_workers", max_workers, 1),
                                 ("keep_finished", keep_finished, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if keep_seconds is not None and not keep_seconds > 0:
            raise ValueError(f"keep_seconds must be > 0 or None, got {keep_seconds!r}")
        self.max_workers, self.keep_finished, self.keep_seconds = (
            max_workers, keep_finished, keep_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._jobs: list[Job] = []  # active and remembered, in submission order
        self._by_key: dict[str, Job] = {}  # the job a new request for a key would share
        self._ids = itertools.count(1)
        self._closed = False

    def submit(self, key: Hashable, fn: JobFn, *, label: str = "",
               expected_s: float | None = None) -> Job:
        """The job for ``key`` (anything :func:`~signseg_core.store.key_digest` hashes): the
        queued, running or remembered finished one (its ``subscribers`` goes up by one), else a
        new job running ``fn(progress, should_stop)``. A job cancelled or being cancelled is
        never shared: asking again starts afresh. A failed one is shared until :meth:`forget`,
        so a page that reruns on every widget change shows the error, not a retry each time.
        ``expected_s``: the submitter's estimate of the running time (:meth:`Job.eta_s`).
        """
        digest = key_digest(key)
        with self._lock:
            if self._closed:
                raise RuntimeError("this JobManager is shut down")
            self._prune()
            job = self._by_key.get(digest)
            if job is not None and job._subscribe():
                return job
            job = Job(digest, fn, label=label or digest[:12],
                      job_id=f"{next(self._ids)}-{digest[:8]}", clock=self._clock,
                      expected_s=expected_s)
            self._by_key[digest] = job
            self._jobs.append(job)
            self._start_workers()
            self._queue.put(job)
        return job

    def get(self, key: Hashable, *, cancelling: bool = False) -> Job | None:
        """The job a request for ``key`` would share now, or None. ``cancelling=True`` also
        returns a job still winding down after a cancel (a page shows "cancelling…" until the
        worker has stopped, instead of offering to start again at once)."""
        with self._lock:
            self._prune()
            job = self._by_key.get(key_digest(key))
        if job is None:
            return None
        return job if job._reusable() or (cancelling and job.is_active) else None

    def jobs(self, *, active_only: bool = True) -> list[Job]:
        """Queued and running jobs, plus remembered finished ones unless ``active_only``."""
        with self._lock:
            self._prune()
            return [j for j in self._jobs if j.is_active or not active_only]

    def forget(self, key: Hashable) -> bool:
        """Stop sharing the job of ``key`` (it keeps running if active); True if there was one."""
        digest = key_digest(key)
        with self._lock:
            job = self._by_key.pop(digest, None)
            if job is not None and job.is_finished:
                self._jobs.remove(job)
        return job is not None

    def shutdown(self, *, cancel_pending: bool = True, wait: bool = False,
                 timeout: float | None = None) -> None:
        """Refuse new jobs, cancel the unfinished ones (unless ``cancel_pending=False``, when
        the queue drains first) and stop the workers; ``wait`` joins them."""
        with self._lock:
            self._closed = True
            active = [j for j in self._jobs if j.is_active]
            threads = list(self._threads)
            for _ in threads:
                self._queue.put(None)
        if cancel_pending:
            for job in active:
                job.cancel()
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for t in threads:
                t.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))

    closed = property(lambda self: self._closed, doc="True once :meth:`shutdown` was called.")

    # -- internals ------------------------------------------------------------------------------
    def _start_workers(self) -> None:  # lock held
        while len(self._threads) < self.max_workers:
            t = threading.Thread(target=self._work, daemon=True,
                                 name=f"signseg-job-{len(self._threads)}")
            t.start()
            self._threads.append(t)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job._run()

    def _prune(self) -> None:  # lock held; forget finished jobs past the age, then the count
        now, ttl = self._clock(), self.keep_seconds
        kept = [j for j in self._jobs if j.is_finished and (ttl is None or now - j.finished <= ttl)]
        keep = set(kept[len(kept) - self.keep_finished:] if self.keep_finished else [])
        for job in [j for j in self._jobs if j.is_finished and j not in keep]:
            self._jobs.remove(job)
            if self._by_key.get(job.key) is job:
                del self._by_key[job.key]


_default: JobManager | None = None
_default_lock = threading.Lock()


def default_manager() -> JobManager:
    """The process-wide manager (one worker); a fresh one if the last was shut down."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = JobManager()
        return _default
