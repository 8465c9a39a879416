import os

import pytest
import torch

# Tests never download, and never touch the user's cache.
os.environ["SIGNSEG_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGNSEG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SIGNSEG_WEIGHTS_DIR", raising=False)
    yield


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(2)
    yield
