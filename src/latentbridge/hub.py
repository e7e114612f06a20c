"""Published weight files on the Hugging Face hub: found in the hub cache, or downloaded with bounded attempts.

huggingface_hub does the transfer, the cache layout and the resumable ``.incomplete`` blobs; this module adds what a
user needs around it: a bounded number of attempts with a bounded connection timeout (huggingface_hub alone retries
for about 25 s when there is no network), and one error that names the repository, the file and the way to work
offline. The settings are read when called:

* ``LATENTBRIDGE_HUB_ATTEMPTS`` (default 2): how many times the file's metadata is asked for before giving up;
* ``LATENTBRIDGE_HUB_TIMEOUT`` (default 10 seconds): how long each attempt waits for the server to answer;
* ``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_CACHE``: huggingface_hub's own settings (read when it is imported).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from . import limits
from .errors import HubError

ENV_ATTEMPTS = "LATENTBRIDGE_HUB_ATTEMPTS"
ENV_TIMEOUT = "LATENTBRIDGE_HUB_TIMEOUT"
DEFAULT_ATTEMPTS = 2
DEFAULT_TIMEOUT = 10.0
OFFLINE_HINT = "set HF_HUB_OFFLINE=1 (or LATENTBRIDGE_OFFLINE=1) to work offline with the files you have"


@dataclass(frozen=True)
class HubFile:
    """A file on the Hugging Face hub."""

    repo_id: str
    filename: str
    subfolder: str | None = None

    @property
    def path(self) -> str:
        """The file's path inside the repository."""
        return f"{self.subfolder}/{self.filename}" if self.subfolder else self.filename

    def __str__(self) -> str:
        return f"hf://{self.repo_id}/{self.path}"


def attempts() -> int:
    """How many times a download asks for the file before giving up (``LATENTBRIDGE_HUB_ATTEMPTS``)."""
    return int(limits.setting(ENV_ATTEMPTS, DEFAULT_ATTEMPTS))


def timeout() -> float:
    """Seconds each attempt waits for the server (``LATENTBRIDGE_HUB_TIMEOUT``)."""
    return float(limits.setting(ENV_TIMEOUT, DEFAULT_TIMEOUT))


def endpoint() -> str:
    """The hub endpoint huggingface_hub talks to (``HF_ENDPOINT``)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def cache_dir() -> Path:
    """The hub cache searched for published files (``HF_HUB_CACHE``, by default ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached(file: HubFile) -> Path | None:
    """The file from the hub cache, without asking the network; None when it was never downloaded."""
    import huggingface_hub

    hit = huggingface_hub.try_to_load_from_cache(file.repo_id, file.path)
    return Path(hit) if isinstance(hit, str) else None


def repo_cached(repo_id: str) -> bool:
    """Whether the hub cache holds anything of ``repo_id``: one folder check, so that a caller looking for many
    files of one repository skips them all when it was never downloaded."""
    from huggingface_hub.file_download import repo_folder_name

    return (cache_dir() / repo_folder_name(repo_id=repo_id, repo_type="model")).is_dir()


def download(file: HubFile) -> Path:
    """The file, downloaded into the hub cache (the cache is used when it already holds it).

    The metadata is asked for up to :func:`attempts` times, each waiting :func:`timeout` seconds; a missing file
    is not asked for again. Every failure raises :class:`HubError` naming the repository and the file; a transfer
    that breaks off leaves nothing in the cache that a later call would take for the file.
    """
    import huggingface_hub

    url = huggingface_hub.hf_hub_url(file.repo_id, file.filename, subfolder=file.subfolder)
    n, wait = attempts(), timeout()
    for attempt in range(1, n + 1):
        try:
            huggingface_hub.get_hf_file_metadata(url, timeout=wait)
            break
        except Exception as e:  # noqa: BLE001 - classified below: missing files fail at once, the rest retry
            reason = _reason(e)
            if _missing(e):
                raise HubError(f"{file}: {reason} at {endpoint()}; check the repository and file name") from None
            if attempt == n:
                raise HubError(f"{file}: cannot download it from {endpoint()} ({reason}; {n} attempt"
                               f"{'s' if n > 1 else ''} of {wait:g} s, set by ${ENV_ATTEMPTS} and ${ENV_TIMEOUT}); "
                               f"{OFFLINE_HINT}, or put the file in a model folder") from None
            time.sleep(min(attempt, 2))
    log = logging.getLogger("huggingface_hub")
    level = log.level
    log.setLevel(logging.ERROR)  # its resume warnings would precede the one error below; restored after
    try:
        return Path(huggingface_hub.hf_hub_download(file.repo_id, file.filename, subfolder=file.subfolder,
                                                    etag_timeout=wait))
    except Exception as e:  # noqa: BLE001 - any transfer failure becomes one error naming the file
        raise HubError(f"{file}: the download from {endpoint()} failed ({_reason(e)}); nothing was cached: try "
                       f"again, or {OFFLINE_HINT}") from None
    finally:
        log.setLevel(level)


def _missing(error: Exception) -> bool:
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(error, (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)):
        return True
    status = getattr(getattr(error, "response", None), "status_code", None)
    return isinstance(error, HfHubHTTPError) and status in (401, 403, 404)


def _reason(error: Exception) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status is not None:
        return f"HTTP {status}" + (" (no such file or repository)" if status in (401, 404) else "")
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:160]}" if text else type(error).__name__
