"""What a dashboard visitor may name on the server: by default, nothing.

Visitors give data by upload (``st.file_uploader``, bounded by ``server.maxUploadSize``). Paths
on the server (text boxes for a responses file or an image folder, ``?data=`` links) are offered
only when the operator turns them on: ``SIGNSEG_ALLOW_SERVER_PATHS=1`` and
``SIGNSEG_DATA_ROOTS=/data/a:/data/b`` (folders separated by ``os.pathsep``). A path is then taken
only when it resolves (symlinks followed, ``..`` collapsed) inside one of those folders; the
refusal says nothing about whether it exists. Server paths (of weights, of the data, of the
cache) are shown to visitors by file name only, unless server paths are on.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from signseg_core.paths import without_paths

#: Environment variables by which the operator turns server paths on, and names their roots.
ALLOW_ENV = "SIGNSEG_ALLOW_SERVER_PATHS"
ROOTS_ENV = "SIGNSEG_DATA_ROOTS"
#: Addresses only this machine can reach: a dashboard listening on one has no other visitors.
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def data_roots() -> tuple[Path, ...]:
    """The folders of ``$SIGNSEG_DATA_ROOTS``, resolved (empty entries ignored)."""
    text = os.environ.get(ROOTS_ENV, "")
    return tuple(Path(p.strip()).expanduser().resolve() for p in text.split(os.pathsep)
                 if p.strip())


def server_paths_enabled() -> bool:
    """True when the operator set ``$SIGNSEG_ALLOW_SERVER_PATHS=1`` and at least one data root."""
    allowed = os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return allowed and bool(data_roots())


def server_path(text: str, *, what: str = "path") -> Path:
    """The server path ``text`` names, resolved, when server paths are on and it lies inside a
    data root (a relative path is taken inside each root in turn); else a ValueError."""
    if not server_paths_enabled():
        raise ValueError("paths on the server are turned off on this dashboard: upload the files "
                         "instead")
    text = str(text).strip()
    if not text:
        raise ValueError(f"enter the {what}")
    path, roots = Path(text).expanduser(), data_roots()
    for candidate in ([path] if path.is_absolute() else [root / path for root in roots]):
        resolved = candidate.resolve()
        if any(resolved.is_relative_to(root) for root in roots):
            return resolved
    raise ValueError(f"{what} {text!r} is not inside the data folders this dashboard offers "
                     f"({', '.join(map(str, roots))})")


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a visitor may see it: in full when server paths are on, else its name only."""
    return str(path) if server_paths_enabled() else Path(path).name


def host_paths_visible() -> bool:
    """Whether visitors may see paths of this host (weights, cache): when server paths are on,
    or when the dashboard listens on a loopback address only (``make run``'s default in
    ``.streamlit/config.toml``), so that its one visitor is the person at this machine."""
    return server_paths_enabled() or str(st.get_option("server.address")) in LOOPBACK


def hide_host_paths(text: str) -> str:
    """``text`` with each absolute path of this host cut to its last part
    (``"/root/.cache/torch/alexnet.pth"`` -> ``"alexnet.pth"``) unless
    :func:`host_paths_visible`; URLs and relative paths are left as they are."""
    return text if host_paths_visible() else without_paths(text)
