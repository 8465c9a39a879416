"""Helpers the dashboard tests share (imported by test modules; pytest puts this folder on
``sys.path``): the repository root, opening a page in Streamlit's AppTest, the Chromium mark."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from signseg_core.figures import export

ROOT = Path(__file__).resolve().parent.parent

needs_chromium = pytest.mark.skipif(export.chromium_path() is None,
                                    reason="needs Chromium: apt-get install chromium")


def open_page(path: str | Path, *, state: dict | None = None, **query) -> AppTest:
    """Run the page at ``path`` once with URL ``query`` parameters and ``state`` preset in
    session state; fails the test on an uncaught exception. Torch pages need more than
    AppTest's 3-s default: every run here may take 120 s."""
    at = AppTest.from_file(str(path), default_timeout=120)
    at.query_params.update(query)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at
