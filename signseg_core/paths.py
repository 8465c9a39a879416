"""Where signseg keeps things on disk.

``SIGNSEG_CACHE_DIR`` moves the result store (default: ``cache/`` next to the package).
``SIGNSEG_WEIGHTS_DIR`` moves user-supplied and converted weights (default: ``<cache>/weights``).
``SIGNSEG_PACKAGES_DIR`` moves weights fetched from registry packages (default:
``<weights>/packages``).
``SIGNSEG_OFFLINE=1`` forbids every download attempt (tests and CI set it).
"""

from __future__ import annotations

import contextlib
import os
import re
from contextvars import ContextVar
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Root of the result store; created on first use."""
    return folder(os.environ.get("SIGNSEG_CACHE_DIR", REPO_ROOT / "cache"), "SIGNSEG_CACHE_DIR")


def folder(where: str | Path, env: str) -> Path:
    """``where`` as a folder, created when missing; a file or an unwritable place in its way is
    one sentence naming ``env``, the variable that moves it (``NotADirectoryError`` or
    ``PermissionError``, which the CLI and the dashboard show as such)."""
    path = Path(where).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise NotADirectoryError(f"{path} must be a folder, but it (or a folder above it) is a "
                                 f"file; set {env} to a folder") from exc
    except PermissionError as exc:
        raise PermissionError(f"{path} cannot be created here (permission denied); set {env} "
                              "to a folder you can write") from exc
    return path


def weights_dir() -> Path:
    """Folder for weights that no package ships (robust ResNets, DeePSiM, converted files)."""
    default = cache_dir() / "weights"
    return folder(os.environ.get("SIGNSEG_WEIGHTS_DIR", default), "SIGNSEG_WEIGHTS_DIR")


def packages_dir() -> Path:
    """Folder for weights taken from registry packages (``fetch-weights``); created on use."""
    default = weights_dir() / "packages"
    return folder(os.environ.get("SIGNSEG_PACKAGES_DIR", default), "SIGNSEG_PACKAGES_DIR")


_NO_DOWNLOADS: ContextVar[bool] = ContextVar("signseg_no_downloads", default=False)


def offline() -> bool:
    """True when downloads are forbidden (``SIGNSEG_OFFLINE`` set to 1/true/yes, or inside
    :func:`no_downloads`)."""
    if _NO_DOWNLOADS.get():
        return True
    return os.environ.get("SIGNSEG_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


@contextlib.contextmanager
def no_downloads():
    """Within this block (this thread or task only), behave as offline: files that are missing
    stay missing. For code that only reads what is already there, such as a page showing results.
    """
    token = _NO_DOWNLOADS.set(True)
    try:
        yield
    finally:
        _NO_DOWNLOADS.reset(token)


# An absolute POSIX path inside prose, not the tail of a URL ("https://host/a/b"): a "/" after no
# word character, dot, colon or slash, then folders, then a last part up to space or a bracket.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s()/]+/)+([^\s()/]+)")


def without_paths(text: str) -> str:
    """``text`` with every absolute path of this machine cut to its file name, for what travels
    or is shown to others (``"missing (/home/x/.cache/alexnet.pth)"`` → ``"missing
    (alexnet.pth)"``); URLs and relative paths are left alone."""
    return _ABSOLUTE_PATH.sub(r"\1", text)

