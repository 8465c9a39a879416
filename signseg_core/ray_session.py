"""Joining a Ray cluster, the one way every part of signseg does it (cluster sweeps, the
dashboard's jobs, training): :func:`connect`, with this process's ``signseg_core`` sent to the
workers (:func:`runtime_env`)."""

from __future__ import annotations

from pathlib import Path

from signseg_core.errors import SignsegError


def runtime_env() -> dict:
    """A new Ray ``runtime_env`` that sends this process's ``signseg_core`` to every worker,
    whatever the workers' ``sys.path``. New on every call: ``ray.init`` replaces the folder in
    the dict it is given by the URI of the package it uploaded, which only that cluster holds,
    so a dict used once and kept would send the next cluster's workers after a missing package."""
    return {"py_modules": [str(Path(__file__).resolve().parent)]}


def connect(address: str | None = None):
    """The ``ray`` module, initialised: joined to ``address`` (or ``$RAY_ADDRESS``, or a local
    Ray when neither is set) unless this process already joined one. The driver's
    ``signseg_core`` travels to the workers (:func:`runtime_env`), so every worker runs the
    driver's code; the other packages must be installed there."""
    try:
        import ray  # deferred: loaded only by what runs on a cluster
    except ImportError as exc:
        raise SignsegError("running on a cluster needs Ray: pip install 'ray[train]>=2.40'") \
            from exc
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env=runtime_env())
    return ray
