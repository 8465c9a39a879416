import importlib.util
import os
from pathlib import Path

import pytest
import torch

from signseg_core.models.registry import load_model
from signseg_core.store import ResultStore

# Tests never download, and never touch the user's cache.
os.environ["SIGNSEG_OFFLINE"] = "1"
# Weights fetched from registry packages at setup are real here too: every test sees this
# checkout's copy (or none), whatever cache folder it isolates.
os.environ.setdefault("SIGNSEG_PACKAGES_DIR", str(Path(__file__).resolve().parent.parent
                                                  / "cache" / "weights" / "packages"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGNSEG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SIGNSEG_WEIGHTS_DIR", raising=False)
    yield


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="module")
def tiny():
    """The 32-px random test network (read-only: share it within a module)."""
    return load_model("tiny_test")


@pytest.fixture
def store(tmp_path):
    """An empty result store of the test's own."""
    return ResultStore(tmp_path / "store")


@pytest.fixture
def tiny_dashboard(monkeypatch, tmp_path):
    """Dashboard pages on tiny_test; no Streamlit cache or background job leaks between tests.

    Page test modules opt in with ``pytestmark = pytest.mark.usefixtures("tiny_dashboard")``.
    """
    import streamlit as st

    from signseg_core.jobs import default_manager

    monkeypatch.setenv("SIGNSEG_UI_TEST_MODEL", "tiny_test")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torchvision weights: missing
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    for job in default_manager().jobs():
        job.cancel()
        job.wait(10)


def load_script(name: str):
    """``scripts/<name>.py`` as a module (the scripts are files, not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
