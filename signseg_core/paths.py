"""Where signseg keeps things on disk.

``SIGNSEG_CACHE_DIR`` moves the result store (default: ``cache/`` next to the package).
``SIGNSEG_WEIGHTS_DIR`` moves user-supplied and converted weights (default: ``<cache>/weights``).
``SIGNSEG_OFFLINE=1`` forbids every download attempt (tests and CI set it).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Root of the result store; created on first use."""
    path = Path(os.environ.get("SIGNSEG_CACHE_DIR", REPO_ROOT / "cache")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def weights_dir() -> Path:
    """Folder for weights that no package ships (robust ResNets, DeePSiM, converted files)."""
    default = cache_dir() / "weights"
    path = Path(os.environ.get("SIGNSEG_WEIGHTS_DIR", default)).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def offline() -> bool:
    """True when downloads are forbidden (``SIGNSEG_OFFLINE`` set to 1/true/yes)."""
    return os.environ.get("SIGNSEG_OFFLINE", "").strip().lower() in {"1", "true", "yes"}
