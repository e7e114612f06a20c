"""Latent files: ComfyUI ``.latent``, safetensors with our metadata, ``.npy`` and (safely loaded) ``.pt``."""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .. import __version__, limits, spaces
from ..errors import InputError, LatentBridgeError, WeightsFormatError
from ..weights import safetensors_header, torch_load
from .atomic import atomic_path, check_readable, check_writable

COMFY_KEY = "latent_tensor"
COMFY_MARKER = "latent_format_version_0"
LEGACY_SD1_SCALE = 0.18215  # ComfyUI's files without the marker hold SD1 latents times this
OUR_KEY = "latent"
META_PREFIX = "latentbridge."
_LATENT_KEYS = (OUR_KEY, COMFY_KEY, COMFY_MARKER, "samples")  # names the latent itself has in some format
MAX_FILE_BYTES = 4 << 30  # a bigger "latent" file is a checkpoint or a data set: refused before its data is read
DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)  # what every operation on latents takes
FORMATS = {".safetensors": "safetensors", ".latent": "comfyui", ".npy": "npy", ".pt": "torch", ".pth": "torch"}


@dataclass
class LatentFile:
    """A latent read from disk, with what the file says about it (``space``/``domain`` may be unknown)."""

    tensor: torch.Tensor
    space: str | None = None
    domain: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. noise_mask, batch_index
    format: str = "safetensors"
    path: Path | None = None


def _format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown latent file type {path.suffix!r}; use one of {', '.join(FORMATS)}")
    return fmt


def load_latent(path: str | os.PathLike, *, space: str | None = None, domain: str | None = None) -> LatentFile:
    """Read a latent file; ``space``/``domain`` state what it holds when the file does not say."""
    path = check_readable(path, "a latent file")
    fmt = _format_of(path)
    loaders = {"safetensors": _load_safetensors, "comfyui": _load_safetensors, "npy": _load_npy, "torch": _load_torch}
    result = loaders[fmt](path)
    result.path = path
    result.space = spaces.get(space).id if space is not None else _stated(path, "space", result.space)
    result.domain = spaces.check_domain(domain) if domain is not None else _stated(path, "domain", result.domain)
    t = result.tensor
    if t.dtype not in DTYPES:
        raise InputError(f"{path}: the latent has dtype {str(t.dtype).removeprefix('torch.')}; latents are "
                         f"{', '.join(str(d).removeprefix('torch.') for d in DTYPES)}")
    if t.ndim == 0:
        raise InputError(f"{path}: holds a single number, not a latent (B, C, H, W)")
    return result


def _stated(path: Path, what: str, value: str | None) -> str | None:
    """The space or domain a file's metadata states, checked against the registry."""
    if value is None:
        return None
    try:
        return spaces.get(value).id if what == "space" else spaces.check_domain(value)
    except LatentBridgeError:
        raise InputError(f"{path}: its metadata names the {what} {value!r}, which latentbridge does not know; state "
                         f"what the file holds with {what}=") from None


def _load_safetensors(path: Path) -> LatentFile:
    try:
        header = safetensors_header(path)
    except WeightsFormatError as e:
        raise InputError(f"{path}: not a readable safetensors file; it may be truncated or of another format "
                         f"({str(e).split(': ', 1)[-1]})") from None
    if header.data_bytes > MAX_FILE_BYTES:
        raise InputError(f"{path}: holds {len(header.tensors)} tensors in {header.data_bytes / 1e9:.1f} GB, more than "
                         f"a latent file can ({MAX_FILE_BYTES >> 30} GiB): is it a model checkpoint? Pass the latent file")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable safetensors file ({e}); it may be truncated or of another format") from e
    if COMFY_KEY in tensors:
        tensor = tensors.pop(COMFY_KEY)
        legacy = tensors.pop(COMFY_MARKER, None) is None
        ours = {k[len(META_PREFIX):]: v for k, v in metadata.items() if k.startswith(META_PREFIX)}
        if legacy:
            return LatentFile(tensor.float() / LEGACY_SD1_SCALE, "sd1", "raw", metadata, tensors, "comfyui-legacy")
        return LatentFile(tensor, ours.get("space"), ours.get("domain", "raw"), metadata, tensors, "comfyui")
    if path.suffix.lower() == ".latent":
        raise InputError(f"{path}: holds no {COMFY_KEY!r} tensor, so it is not a ComfyUI latent file (tensors: "
                         f"{', '.join(sorted(tensors)) or 'none'})")
    tensors.pop(COMFY_MARKER, None)
    ours = {k[len(META_PREFIX):]: v for k, v in metadata.items() if k.startswith(META_PREFIX)}
    if OUR_KEY in tensors:
        tensor = tensors.pop(OUR_KEY)
    elif len(tensors) == 1:
        tensor = tensors.pop(next(iter(tensors)))
    else:
        names = sorted(tensors)
        listed = ", ".join(names[:6]) + (f", ... ({len(names)} in all; is it a model file?)" if len(names) > 6 else "")
        raise InputError(f"{path}: holds tensors {listed} but none named {OUR_KEY!r} or {COMFY_KEY!r}; which one is "
                         "the latent?")
    return LatentFile(tensor, ours.get("space"), ours.get("domain"), metadata, tensors, "safetensors")


def _load_npy(path: Path) -> LatentFile:
    """A plain numeric ``.npy`` array; its header is checked before any data is read (pickles never are)."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
        except (ValueError, EOFError, SyntaxError, TypeError) as e:
            raise InputError(f"{path}: not a .npy file (its NumPy header cannot be read: {e}); it may be truncated or "
                             "of another format") from None
        if dtype.hasobject:
            raise InputError(f"{path}: refusing to load: the array holds Python objects (a pickle), not numbers")
        if dtype.names is not None or dtype.subdtype is not None:
            raise InputError(f"{path}: holds a structured array (fields {', '.join(dtype.names or ())}), not a plain "
                             "array of numbers")
        expected = math.prod(shape) * dtype.itemsize
        if expected > MAX_FILE_BYTES:
            raise InputError(f"{path}: holds {expected / 1e9:.1f} GB of data, more than a latent file can "
                             f"({MAX_FILE_BYTES >> 30} GiB)")
        available = os.fstat(f.fileno()).st_size - f.tell()
        if available < expected:
            raise InputError(f"{path}: the file is truncated: its header promises {dtype} {shape} ({expected} bytes) "
                             f"but only {available} bytes follow")
        array = np.fromfile(f, dtype=dtype, count=math.prod(shape)).reshape(shape, order="F" if fortran else "C")
    try:  # big-endian files are read as native numbers, the same values
        return LatentFile(torch.from_numpy(array.astype(dtype.newbyteorder("="), order="C", copy=False)), format="npy")
    except TypeError as e:  # types torch has no counterpart for (strings, dates, float128)
        raise InputError(f"{path}: holds {dtype} values, not numbers a latent can be made of") from e


def _load_torch(path: Path) -> LatentFile:
    with warnings.catch_warnings():  # torch's notes on pickle protocols would add lines to a one-line refusal
        warnings.simplefilter("ignore", UserWarning)
        obj = torch_load(path, error=InputError)
    if isinstance(obj, torch.Tensor):
        return LatentFile(obj, format="torch")
    if isinstance(obj, dict):
        for key in ("samples", OUR_KEY, COMFY_KEY):
            if isinstance(obj.get(key), torch.Tensor):
                extras = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor) and k != key}
                return LatentFile(obj[key], extras=extras, format="torch")
    raise InputError(f"{path}: expected a tensor or a dict with 'samples', got {type(obj).__name__}")


def save_latent(
    path: str | os.PathLike,
    tensor: torch.Tensor,
    *,
    space: str | None = None,
    domain: str | None = None,
    metadata: dict[str, str] | None = None,
    extras: dict[str, torch.Tensor] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a latent atomically; the format follows the extension (``.latent`` is ComfyUI's, in the raw domain).

    ``space`` and ``domain`` are recorded in safetensors metadata so the file can be read back without guessing.
    """
    path = check_writable(path, overwrite=overwrite)
    fmt = _format_of(path)
    if spaces.check_tensor(tensor).dtype not in DTYPES:
        raise InputError(f"save_latent needs a torch.Tensor of {', '.join(str(d).removeprefix('torch.') for d in DTYPES)}; "
                         f"got {tensor.dtype}")
    if tensor.ndim == 0:
        raise InputError("save_latent needs a latent (B, C, H, W), not a single number")
    limits.check_not_empty(tensor)
    reserved = sorted(set(extras or {}) & set(_LATENT_KEYS))
    if reserved or not all(isinstance(v, torch.Tensor) for v in (extras or {}).values()):
        raise InputError(f"extras= must map names other than {', '.join(map(repr, _LATENT_KEYS))} to tensors"
                         f"{f'; {reserved[0]!r} would replace the latent' if reserved else ''}")
    if not isinstance(metadata or {}, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in (metadata or {}).items()):
        raise InputError("metadata= must map strings to strings (safetensors metadata is text)")
    if not bool(torch.isfinite(tensor).all()):
        raise InputError(f"refusing to write {path}: the latent holds NaN or infinite values")
    sp = spaces.get(space) if space is not None else None
    if domain is not None:
        spaces.check_domain(domain)
    if sp is not None:
        spaces.validate(tensor, sp, domain or "raw")
    data = tensor.detach().to("cpu").contiguous()
    if fmt == "comfyui" and sp is not None and domain not in (None, "raw"):
        data = spaces.convert_domain(data, sp, domain, "raw").contiguous()
        domain = "raw"
    meta = {f"{META_PREFIX}{k}": v for k, v in {
        "space": sp.id if sp else None,
        "domain": domain,
        "shape": json.dumps(list(data.shape)),
        "dtype": str(data.dtype).removeprefix("torch."),
        "producer": f"latentbridge {__version__}",
    }.items() if v is not None}
    meta.update(metadata or {})
    extras = {k: v.detach().to("cpu").contiguous() for k, v in (extras or {}).items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        if fmt == "safetensors":
            save_file({OUR_KEY: data, **extras}, str(tmp), metadata=meta)
        elif fmt == "comfyui":
            save_file({COMFY_KEY: data, COMFY_MARKER: torch.tensor([]), **extras}, str(tmp), metadata=meta)
        elif fmt == "npy":
            with open(tmp, "wb") as f:
                np.save(f, data.float().numpy() if data.dtype == torch.bfloat16 else data.numpy())
        else:
            torch.save({"samples": data, **extras}, tmp)
    return path


def latent_summary(lf: LatentFile) -> dict:
    """Shape, dtype, finite statistics, stated space and extras of a latent file, as plain data (for info views)."""
    t = lf.tensor.detach().float()
    finite = torch.isfinite(t)
    vals = t[finite]
    stats = {"min": float(vals.min()), "max": float(vals.max()), "mean": float(vals.mean()),
             "std": float(vals.std()) if vals.numel() > 1 else 0.0} if vals.numel() else {}
    return {"file": str(lf.path), "format": lf.format, "shape": list(lf.tensor.shape),
            "dtype": str(lf.tensor.dtype).removeprefix("torch."), "nonfinite": int((~finite).sum()),
            "stats": stats, "space": lf.space, "domain": lf.domain, "metadata": lf.metadata,
            "extras": {k: list(v.shape) for k, v in lf.extras.items()}}
