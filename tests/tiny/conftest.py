"""Fixtures for the tiny-autoencoder tests: the real TAESD files, resolvable by name."""

from __future__ import annotations

import pytest
from tests.conftest import SHARED_WEIGHTS, shared_file

from latentbridge import tiny


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
