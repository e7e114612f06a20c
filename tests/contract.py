"""The contract every refused input must keep, and a way to run the CLI as a user does.

A refused input gets exit status 2, exactly one ``error:`` line on stderr, no traceback, nothing new written where
the command writes, and every input file byte-for-byte unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run_cli(*argv: object) -> Result:
    """Run ``latentbridge ARGV`` in this process (fast; the suite's environment applies)."""
    from latentbridge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's own exits
            code = e.code if isinstance(e.code, int) else 2
    return Result(int(code), out.getvalue(), err.getvalue())


def run_cli_process(*argv: object, env: dict[str, str] | None = None, timeout: float = 120,
                    cwd: str | os.PathLike | None = None) -> Result:
    """Run ``python -m latentbridge ARGV`` in a fresh process, as a user's shell would; ``env`` is its whole
    environment (default: this process's)."""
    proc = subprocess.run([sys.executable, "-m", "latentbridge", *map(str, argv)], capture_output=True, text=True,
                          env=os.environ.copy() if env is None else env, timeout=timeout, cwd=cwd)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def snapshot(*paths: str | os.PathLike) -> dict[str, str]:
    """Every file under ``paths`` (files or folders) with the digest of its bytes (size and modification time for
    files over 64 MB, such as sparse stand-ins for checkpoints); symlinks by their target."""
    found: dict[str, str] = {}
    for root in map(Path, paths):
        items = [root] if not root.is_dir() or root.is_symlink() else sorted(root.rglob("*"))
        for p in items:
            if p.is_symlink():
                found[str(p)] = f"-> {os.readlink(p)}"
            elif p.is_file() and p.stat().st_size > 64 << 20:
                found[str(p)] = f"{p.stat().st_size} bytes, modified {p.stat().st_mtime_ns}"
            elif p.is_file():
                found[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_dir():
                found[str(p)] = "dir"
    return found


def assert_refused(result: Result, before: dict[str, str], *paths: str | os.PathLike, match: str | None = None) -> None:
    """``result`` kept the refusal contract; ``before`` is :func:`snapshot` of ``paths`` taken before the run."""
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 2, f"exit {result.code}, stderr:\n{result.err}"
    assert "Traceback" not in result.err, result.err
    assert len(lines) == 1 and lines[0].startswith("error: "), f"want one 'error:' line, got:\n{result.err}"
    if match is not None:
        assert match.lower() in lines[0].lower(), f"{match!r} not in {lines[0]!r}"
    assert snapshot(*paths) == before, "the command wrote, removed or changed files"


@contextlib.contextmanager
def small_disk(folder: str | os.PathLike, size: str = "64k", *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``folder``: a real full (or read-only) disk. Skips the test where mounting
    is not allowed (CI runs as root, so there it runs)."""
    import pytest

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: a full disk is made by mounting a small tmpfs")
    options = f"size={size}" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not allowed'}); CI runs as root and can")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:  # a writer left a file open
            subprocess.run(["umount", "--lazy", str(folder)], capture_output=True)
