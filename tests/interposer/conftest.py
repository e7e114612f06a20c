"""Fixtures for the interposer tests: the reference v4.0 network (imported from a temp dir) and small model files."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

REF_GIT = Path(os.environ.get("LATENTBRIDGE_INTERPOSER_GIT", "/work/.mirror/city96+SD-Latent-Interposer/repo"))


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """city96's interposer.py (HEAD of the mirror), imported from a temporary folder; never part of the repo."""
    src = os.environ.get("LATENTBRIDGE_INTERPOSER_REF")
    if src and Path(src).is_file():
        text = Path(src).read_text()
    elif REF_GIT.is_dir():
        done = subprocess.run(["git", f"--git-dir={REF_GIT}", "show", "HEAD:interposer.py"], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot read interposer.py from {REF_GIT}: {done.stderr.strip()}")
        text = done.stdout
    else:
        pytest.skip(f"the reference interposer.py is absent (no {REF_GIT}; set LATENTBRIDGE_INTERPOSER_REF to a copy)")
    path = tmp_path_factory.mktemp("reference") / "reference_interposer.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("reference_interposer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """These networks are small: one thread for every interposer test."""
