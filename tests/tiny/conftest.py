"""Fixtures for the tiny-autoencoder tests: the real TAESD files, resolvable by name."""

from __future__ import annotations

import pytest
from tests.conftest import SHARED_WEIGHTS, shared_file


@pytest.fixture(autouse=True)
def _tiny_defaults(one_thread, fresh_tiny_cache):
    """Every tiny test: one thread, nothing cached by an earlier test."""


@pytest.fixture
def shared_models(monkeypatch):
    """Make the real files in ../shared/weights/taesd resolve by name (LATENTBRIDGE_MODELS)."""
    shared_file("taef2_decoder.pth")
    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(SHARED_WEIGHTS))
    return SHARED_WEIGHTS
