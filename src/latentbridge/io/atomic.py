"""Atomic file writes: a temporary file in the target folder, renamed into place only when complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError


def check_writable(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Fail early, with the fix, when ``path`` cannot be written; returns it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder: give a file name to write")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: the folder {path.parent} does not exist; create it first")
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists: choose another name or allow overwriting (--overwrite; overwrite=True in Python)")
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"cannot write {path}: no permission to write in {path.parent}")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it becomes ``path``, on any error it is removed.

    Without ``overwrite`` an existing file is never replaced, even if it appears while writing.
    """
    path = check_writable(path, overwrite=overwrite)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from e
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp (and some writers) make 0600; give the user's usual permissions
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    except OSError as e:
        raise InputError(f"writing {path} failed: {e.strerror or e}; nothing was written") from e
    finally:
        tmp.unlink(missing_ok=True)


def _link_no_clobber(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError as e:
        raise InputError(f"{path} appeared while writing: nothing was overwritten; pass overwrite=True to replace it") from e
    except OSError:  # file systems without hard links
        if path.exists():
            raise InputError(f"{path} already exists: pass overwrite=True to replace it") from None
        os.replace(tmp, path)
