"""Fixtures for the tiny-autoencoder tests: the real TAESD files, resolvable by name."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import SHARED_WEIGHTS, shared_file

from latentbridge import tiny


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread avoids OpenMP hand-offs that dominate on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _fresh_cache():
    tiny.clear_cache()
    yield
    tiny.clear_cache()


@pytest.fixture
def shared_models(monkeypatch):
    """Make the real files in ../shared/weights/taesd resolve by name (LATENTBRIDGE_MODELS)."""
    shared_file("taef2_decoder.pth")
    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(SHARED_WEIGHTS))
    return SHARED_WEIGHTS
