"""Checks before reading or writing a file, and atomic writes: a temporary file in the target folder, renamed into
place only when complete.

A failed write leaves nothing behind and names the true cause (a full disk, a read-only file system). Temporary
files still open are listed in :data:`PARTIALS`, so an interrupted program can remove them on its way out.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import InputError

PARTIALS: set[Path] = set()  # temporary files being written now
LOW_SPACE_BYTES = 1 << 20  # a writer failing with less than this free in its folder is taken to have filled the disk
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def check_readable(path: str | os.PathLike, what: str = "a file") -> Path:
    """Fail with the fix when ``path`` is not ``what`` ("a latent file") that can be read (a folder, a dangling link, ...)."""
    path = as_path(path)
    try:
        if path.is_dir():
            raise InputError(f"{path} is a folder, not {what}: name a file inside it")
        if path.is_symlink() and not path.exists():
            raise InputError(f"{path} is a link to {os.readlink(path)}, which {_dangling_why(path)}")
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if not path.is_file():
            raise InputError(f"{path} is not a regular file (a device, pipe or socket): give {what}")
        if not os.access(path, os.R_OK):
            raise InputError(f"cannot read {path}: no permission to read it")
    except OSError as e:  # a name too long, a loop of links, a folder that cannot be searched
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    return path


def as_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path; anything else (None, a number, bytes) is refused instead of failing deep inside."""
    if not isinstance(path, str | os.PathLike) or isinstance(path, bytes):
        raise InputError(f"expected a file path (str or os.PathLike), got {type(path).__name__}")
    if not str(path) or "\0" in str(path):
        raise InputError(f"{str(path)!r} is not a usable file name: it is empty or holds a NUL character")
    return Path(path)


def _dangling_why(link: Path) -> str:
    try:
        os.stat(link)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "leads back to itself (a loop of links)"
    return "does not exist"


def check_writable(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Fail early, with the fix, when ``path`` cannot be written; returns it as a Path."""
    path = as_path(path)
    try:
        _check_writable(path, overwrite)
    except OSError as e:  # a name too long, a loop of links, a folder that cannot be searched
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _check_writable(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise InputError(f"{path} is a folder: give a file name to write")
    if path.is_symlink() and not path.exists() and not overwrite:
        raise InputError(f"{path} is a link to {os.readlink(path)}, which does not exist: remove the link or choose "
                         "another name (overwrite=True replaces the link)")
    parent = path.parent
    if not parent.is_dir():
        if parent.exists():
            raise InputError(f"cannot write {path}: {parent} is a file, not a folder")
        raise InputError(f"cannot write {path}: the folder {parent} does not exist; create it first")
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists: choose another name or allow overwriting with overwrite=True")
    if os.statvfs(parent).f_flag & os.ST_RDONLY:
        raise InputError(f"cannot write {path}: {parent} is on a read-only file system")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {path}: no permission to write in {parent}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it becomes ``path``, on any error it is removed.

    Without ``overwrite`` an existing file is never replaced, even if it appears while writing.
    """
    with atomic_paths([path], overwrite=overwrite) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike], *, overwrite: bool = False) -> Iterator[list[Path]]:
    """:func:`atomic_path` for several files at once: all of them are written, or none (old files come back)."""
    targets = [check_writable(p, overwrite=overwrite) for p in paths]
    if len(set(targets)) != len(targets):
        raise InputError(f"the same file is named twice among {', '.join(map(str, targets))}")
    temps: list[Path] = []
    try:
        for target in targets:
            temps.append(_temporary(target))
        yield temps
        for tmp in temps:
            _finish(tmp)
        _place(temps, targets, overwrite)
    except InputError:
        raise
    except Exception as e:  # writers report a full disk in their own words (safetensors, torch), or not at all
        full = (isinstance(e, OSError) and e.errno in _FULL) or _free_bytes(targets[0].parent) < LOW_SPACE_BYTES
        if full or isinstance(e, OSError):
            raise InputError(_failure(targets, e, full=full)) from e
        raise
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
            PARTIALS.discard(tmp)


def remove_partials() -> None:
    """Remove the temporary files of writes that were cut short (a signal ended the program mid-write)."""
    for tmp in list(PARTIALS):
        tmp.unlink(missing_ok=True)
        PARTIALS.discard(tmp)


def _temporary(path: Path) -> Path:
    """A new empty file beside ``path``, in PARTIALS before it exists: a signal at any moment leaves no orphan
    (with ``tempfile.mkstemp`` the file existed for a few bytecodes before its name could be recorded)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.partial"
        PARTIALS.add(tmp)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return tmp
        except FileExistsError:
            PARTIALS.discard(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            PARTIALS.discard(tmp)
            raise


def _finish(tmp: Path) -> None:
    """Flush to disk and give the user's usual permissions (mkstemp and some writers make 0600)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)


def _place(temps: list[Path], targets: list[Path], overwrite: bool) -> None:
    """Move every temporary file into place; if one fails, undo those already placed and restore old files."""
    placed: list[tuple[Path, Path | None]] = []  # (target, backup of the file it replaced)
    backups: list[Path] = []
    try:
        for tmp, target in zip(temps, targets, strict=True):
            backup = _backup(target) if overwrite and len(targets) > 1 else None
            backups += [backup] if backup is not None else []
            if overwrite:
                os.replace(tmp, target)
            else:
                _link_no_clobber(tmp, target)
            placed.append((target, backup))
    except BaseException:
        for target, backup in reversed(placed):
            if backup is not None:
                os.replace(backup, target)
            else:
                target.unlink(missing_ok=True)
        raise
    finally:
        for backup in backups:
            backup.unlink(missing_ok=True)
            PARTIALS.discard(backup)


def _backup(target: Path) -> Path | None:
    """A hard link to the file ``target`` holds now (``None`` when there is none), to restore it on failure."""
    if not target.is_file() or target.is_symlink():
        return None
    backup = _temporary(target)
    backup.unlink()
    os.link(target, backup)
    return backup


def _link_no_clobber(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError as e:
        raise InputError(f"{path} appeared while writing: nothing was overwritten; pass overwrite=True to replace it") from e
    except OSError:  # file systems without hard links
        if path.exists():
            raise InputError(f"{path} already exists: pass overwrite=True to replace it") from None
        os.replace(tmp, path)


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return LOW_SPACE_BYTES


def _failure(targets: list[Path], e: Exception, *, full: bool) -> str:
    what = str(targets[0]) if len(targets) == 1 else f"{len(targets)} files ({targets[0]} ..)"
    if full:
        return (f"writing {what} failed: no space left on the device holding {targets[0].parent}; nothing was "
                "written: free some space or write elsewhere")
    return f"writing {what} failed: {getattr(e, 'strerror', None) or e}; nothing was written"
