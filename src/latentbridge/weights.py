"""Find weight files by name and read their tensors safely.

Lookup order: an explicit path, then the user's model folders (``LATENTBRIDGE_MODELS``, folders registered by
an integration such as ComfyUI's ``models/vae_approx``, ``~/.cache/latentbridge/models``, the models shipped in
the package), then the Hugging Face cache, then a hub download unless offline mode is on.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .errors import WeightsFormatError, WeightsNotFoundError

ENV_DIRS = "LATENTBRIDGE_MODELS"
ENV_OFFLINE = "LATENTBRIDGE_OFFLINE"
PACKAGE_MODELS = Path(__file__).resolve().parent / "models"
USER_MODELS = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "latentbridge" / "models"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")

_registered: list[tuple[str | None, Path]] = []


@dataclass(frozen=True)
class HubFile:
    """A file on the Hugging Face hub."""

    repo_id: str
    filename: str
    subfolder: str | None = None

    def __str__(self) -> str:
        return f"hf://{self.repo_id}/{self.subfolder + '/' if self.subfolder else ''}{self.filename}"


def add_search_dir(path: str | os.PathLike, *, kind: str | None = None) -> None:
    """Register a folder to search (for ``kind`` only, e.g. ``vae_approx``, or for every kind)."""
    entry = (kind, Path(path))
    if entry not in _registered:
        _registered.append(entry)


def search_dirs(kind: str | None = None) -> list[Path]:
    """The user model folders searched for ``kind``, in order (each also searched in its ``kind`` subfolder)."""
    roots = [Path(p) for p in os.environ.get(ENV_DIRS, "").split(os.pathsep) if p]
    roots += [p for k, p in _registered if k is None or k == kind]
    roots += [USER_MODELS, PACKAGE_MODELS]
    out: list[Path] = []
    for root in roots:
        for d in ([root / kind] if kind else []) + [root]:
            if d not in out:
                out.append(d)
    return out


def offline() -> bool:
    """True when downloads are off (``HF_HUB_OFFLINE`` or ``LATENTBRIDGE_OFFLINE`` set to 1/true/yes)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", ENV_OFFLINE))


def resolve(
    name_or_path: str | os.PathLike,
    *,
    filenames: Sequence[str] = (),
    kind: str | None = None,
    hub: Sequence[HubFile] = (),
    models_dir: str | os.PathLike | None = None,
    allow_download: bool | None = None,
) -> Path:
    """Return the path of a weight file: ``name_or_path`` itself if it is a file, else the first of ``filenames``
    found in the model folders (only ``models_dir`` when given), the hub cache, or a download.
    """
    direct = Path(name_or_path)
    if direct.is_file():
        return direct
    if direct.suffix.lower() in WEIGHT_SUFFIXES or os.sep in str(name_or_path):
        raise WeightsNotFoundError(f"{direct}: no such weight file")
    names = list(filenames) or [str(name_or_path)]
    dirs = [Path(models_dir)] if models_dir is not None else search_dirs(kind)
    for d in dirs:
        for fn in names:
            if (d / fn).is_file():
                return d / fn
    looked = [str(d) for d in dirs]
    download = (not offline()) if allow_download is None else allow_download
    tried: list[str] = []
    for h in hub:
        cached = _from_hub(h, download=False)
        if cached:
            return cached
        tried.append(str(h))
    if download:
        errors = []
        for h in hub:
            try:
                got = _from_hub(h, download=True)
            except Exception as e:  # noqa: BLE001 - any hub failure becomes part of the message below
                errors.append(f"{h}: {type(e).__name__}")
                continue
            if got:
                return got
        tried = errors or tried
    where = f"the hub ({'; '.join(tried)})" if tried else "no hub location is known for it"
    mode = "" if download or not hub else " (offline mode: no download tried)"
    raise WeightsNotFoundError(
        f"cannot find {name_or_path!s} ({' or '.join(names)}). Looked in: {', '.join(looked)}; "
        f"{where}{mode}. Put the file in {dirs[0]} (or a folder named in ${ENV_DIRS}), or pass its path"
    )


def _from_hub(h: HubFile, *, download: bool) -> Path | None:
    import huggingface_hub

    if not download:
        name = f"{h.subfolder}/{h.filename}" if h.subfolder else h.filename
        hit = huggingface_hub.try_to_load_from_cache(h.repo_id, name)
        return Path(hit) if isinstance(hit, str) else None
    return Path(huggingface_hub.hf_hub_download(h.repo_id, h.filename, subfolder=h.subfolder))


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read every tensor of a weight file (safetensors, or a torch file through ``weights_only``) and its metadata."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: no such weight file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"PK" or (path.suffix.lower() in (".pth", ".pt", ".ckpt", ".bin") and head[:1] == b"\x80"):
        return _load_torch(path), {}
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), "pt") as f:
            metadata = dict(f.metadata() or {})
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
        return tensors, metadata
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsFormatError(f"{path}: not a valid safetensors or torch weight file ({e}); "
                                 "it may be truncated or corrupt: download it again") from e


def torch_load(path: Path, *, error: type[Exception] = WeightsFormatError) -> object:
    """``torch.load`` restricted to tensors and plain containers; anything else raises ``error`` with the fix."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise error(f"{path}: refusing to load: unpickling it would run code or build arbitrary Python objects; "
                    "convert it to safetensors in a trusted environment") from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise error(f"{path}: not a readable torch file ({e}); it may be truncated or corrupt") from e


def _load_torch(path: Path) -> dict[str, torch.Tensor]:
    obj = torch_load(path)
    while isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), dict):
        obj = next(iter(obj.values()))  # {"state_dict": {...}} and similar wrappers
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsFormatError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
