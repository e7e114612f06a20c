"""Find weight files by name and read their tensors safely.

Lookup order: an explicit path, then the user's model folders (``LATENTBRIDGE_MODELS``, folders registered by
an integration such as ComfyUI's ``models/vae_approx``, ``~/.cache/latentbridge/models``, the models shipped in
the package), then the Hugging Face cache, then a hub download unless offline mode is on.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError, safe_open

from . import devices
from . import hub as _hub
from .errors import HubError, InputError, WeightsFormatError, WeightsNotFoundError
from .hub import HubFile

ENV_DIRS = "LATENTBRIDGE_MODELS"
ENV_OFFLINE = "LATENTBRIDGE_OFFLINE"
PACKAGE_MODELS = Path(__file__).resolve().parent / "models"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
T = TypeVar("T")

_registered: list[tuple[str | None, Path]] = []


def user_models() -> Path:
    """The user's own model folder, ``$XDG_CACHE_HOME/latentbridge/models`` (read when called)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "latentbridge" / "models"


def add_search_dir(path: str | os.PathLike, *, folder: str | None = None) -> None:
    """Register a model folder to search (for one weight subfolder only, e.g. ``vae_approx``, or for every one)."""
    entry = (folder, Path(path))
    if entry not in _registered:
        _registered.append(entry)


def search_dirs(folder: str | None = None) -> list[Path]:
    """The user model folders searched for weights of ``folder`` (e.g. ``vae_approx``), in order; each root is
    searched in its ``folder`` subfolder first, then itself. A folder registered for ``folder`` alone is that
    folder already, and is searched as it is."""
    roots = [(None, Path(p)) for p in os.environ.get(ENV_DIRS, "").split(os.pathsep) if p]
    roots += [(k, p) for k, p in _registered if k is None or k == folder]
    roots += [(None, user_models()), (None, PACKAGE_MODELS)]
    out: list[Path] = []
    for only, root in roots:
        for d in [*([root / folder] if folder and only is None and root.name != folder else []), root]:
            if d not in out:
                out.append(d)
    return out


def models_folder(models_dir: str | os.PathLike) -> Path:
    """``models_dir`` as a folder to search (a missing one holds nothing); :class:`InputError` when it is a file."""
    if not isinstance(models_dir, str | os.PathLike):
        raise InputError(f"models_dir= is a folder path (str or os.PathLike); got {models_dir!r}")
    path = Path(models_dir)
    if path.exists() and not path.is_dir():
        raise InputError(f"models_dir={str(path)!r} is a file: pass the folder that holds the weight files")
    return path


def offline() -> bool:
    """True when downloads are off (``HF_HUB_OFFLINE`` or ``LATENTBRIDGE_OFFLINE`` set to 1/true/yes)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", ENV_OFFLINE))


def resolve(
    name_or_path: str | os.PathLike,
    *,
    filenames: Sequence[str] = (),
    folder: str | None = None,
    hub: Sequence[HubFile] = (),
    models_dir: str | os.PathLike | None = None,
    allow_download: bool | None = None,
) -> Path:
    """Return the path of a weight file: ``name_or_path`` itself if it is a file, else the first of ``filenames``
    (default: ``name_or_path``) found in the model folders (only ``models_dir`` when given), then the hub cache,
    then a download of ``hub`` (unless offline, or ``allow_download`` is False).

    A path with a folder in it (``models/x.safetensors``) is taken as an explicit path and never searched for.
    """
    direct = Path(name_or_path)
    if direct.is_file():
        return direct
    if direct.is_dir():
        raise InputError(f"{direct} is a folder, not a weight file: name the file inside it")
    if len(direct.parts) > 1:
        raise WeightsNotFoundError(f"{direct}: no such weight file")
    names = list(filenames) or [str(name_or_path)]
    dirs = [models_folder(models_dir)] if models_dir is not None else search_dirs(folder)
    for d in dirs:
        for fn in names:
            if (d / fn).is_file():
                return d / fn
    for h in hub:
        hit = _hub.cached(h)
        if hit:
            return hit
    download = (not offline()) if allow_download is None else allow_download
    failures: list[str] = []
    if download:
        for h in hub:
            try:
                return _hub.download(h)
            except HubError as e:
                failures.append(str(e))
    if failures:
        where = "; ".join(failures)
    elif hub:
        where = (f"not in the hub cache {_hub.cache_dir()} ({', '.join(map(str, hub))}), and offline mode is on: "
                 f"unset HF_HUB_OFFLINE and {ENV_OFFLINE} to download it" if allow_download is None else
                 f"not in the hub cache {_hub.cache_dir()} ({', '.join(map(str, hub))}); no download was asked for")
    else:
        where = "no hub location is known for it"
    raise WeightsNotFoundError(
        f"cannot find {name_or_path!s} ({' or '.join(names)}). Looked in: {', '.join(map(str, dirs))}; {where}. "
        f"Put the file in {dirs[0]} (or a folder named in ${ENV_DIRS}), or pass its path",
        filenames=names, folder=folder,
    )


MAX_HEADER_BYTES = 100_000_000  # safetensors' own bound on a header


@dataclass(frozen=True)
class SafetensorsHeader:
    """What a safetensors file says about itself, read without mapping its data."""

    metadata: dict[str, str]
    tensors: dict[str, tuple[str, tuple[int, ...]]]  # name -> (dtype, shape)
    data_bytes: int


def safetensors_header(path: str | os.PathLike) -> SafetensorsHeader:
    """The header of a safetensors file: only its first bytes are read, so a 48 GB checkpoint costs a few
    kilobytes (``safe_open`` maps the whole file). :class:`WeightsFormatError` when it is not one."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 2 <= size <= MAX_HEADER_BYTES:
                raise ValueError(f"header length {size}")
            header = json.loads(f.read(size))
        meta = header.pop("__metadata__", None) or {}
        tensors = {k: (v["dtype"], tuple(int(n) for n in v["shape"])) for k, v in header.items()}
        data = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise WeightsFormatError(f"{path}: not a safetensors file (its header cannot be read: {e})") from None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise WeightsFormatError(f"{path}: not a safetensors file (its metadata is not a map of strings)")
    return SafetensorsHeader(dict(meta), tensors, data)


def _weight_file(path: object) -> Path:
    """``path`` as a Path to an existing file; a folder, a missing file or a value that is not a path is refused."""
    _stat_file(path)
    return Path(path)  # type: ignore[arg-type]


def _stat_file(path: object) -> os.stat_result:
    """The ``os.stat`` of a weight file, from one system call (the model cache asks on every hit); refusals as
    :func:`_weight_file` says."""
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise InputError(f"expected a weight file path (str or os.PathLike), got {path!r}")
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        raise WeightsNotFoundError(f"{path}: no such weight file") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path} is a folder, not a weight file: name the file inside it")
    if not stat.S_ISREG(st.st_mode):
        raise WeightsNotFoundError(f"{path}: no such weight file")
    return st


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read every tensor of a weight file (safetensors, or a torch file through ``weights_only``) and its metadata."""
    path = _weight_file(path)
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


# --- the one schema, loader and cache of the model files latentbridge writes --------------------------------------

META = "latentbridge."
CARD = f"{META}card"  # the training card of an exported model, as JSON
# Files shipped before the one schema: bare keys, told apart by their ``format``.
_LEGACY_FORMATS = {"latentbridge.interposer/1": "interposer", "latentbridge.upscaler/1": "upscaler"}


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says it is: the one schema every file we write carries as ``latentbridge.*`` metadata."""

    kind: str | None  # interposer | upscaler | previewer | preview-factors | tiny; None: no metadata (e.g. v4.0)
    spaces: tuple[str, ...] = ()  # the space it serves, or (source, target) for an interposer
    domains: tuple[str, ...] = ()  # the domain it takes, or (in, out)
    arch: str | None = None
    config: dict = field(default_factory=dict, hash=False)
    metrics: dict = field(default_factory=dict, hash=False)
    metadata: dict = field(default_factory=dict, hash=False, compare=False)  # every key as stored

    @property
    def space(self) -> str | None:
        return self.spaces[0] if self.spaces else None

    @property
    def storage(self) -> str:
        """The dtype the file keeps its weights in (:data:`STORAGE_DTYPES`); files that do not say are float32."""
        return self.metadata.get(STORAGE_KEY, "float32")


# The dtypes a model file may keep its weights in. Networks are built in float32 and the stored tensors upcast into
# them exactly (:func:`load_state`), so the storage dtype only decides the file's size and the weights' rounding;
# the network then computes in the dtype its caller asks for.
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
STORAGE_KEY = f"{META}storage"


def stored(tensors: dict[str, torch.Tensor], metadata: dict[str, str], dtype: str
           ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a model file that keeps its weights in ``dtype`` (a :data:`STORAGE_DTYPES`
    name): floating-point tensors rounded to it on the CPU (others as they are), the dtype recorded under
    :data:`STORAGE_KEY`. :class:`InputError` when a weight is beyond the dtype's range (float16 stops at 65504)."""
    if dtype not in STORAGE_DTYPES:
        raise InputError(f"dtype={dtype!r} is not a storage dtype: use one of {', '.join(STORAGE_DTYPES)}")
    want = STORAGE_DTYPES[dtype]
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        v = v.detach().to("cpu")
        if v.is_floating_point():
            limit = torch.finfo(want).max
            if bool((v.isfinite() & (v.abs() > limit)).any()):
                raise InputError(f"{k} holds values beyond {dtype}'s range (+-{limit:g}): keep this model in float32")
            v = v.to(want)
        out[k] = v.contiguous()
    return out, {**metadata, STORAGE_KEY: dtype}


def model_metadata(*, kind: str, spaces: Sequence[str], domains: Sequence[str], arch: str | None = None,
                   config: dict | None = None, metrics: dict | None = None, extra: dict[str, str] | None = None
                   ) -> dict[str, str]:
    """The ``latentbridge.*`` metadata block of a model file (what :func:`model_info` reads back)."""
    meta = {f"{META}kind": kind, f"{META}spaces": ",".join(spaces), f"{META}domains": ",".join(domains),
            f"{META}config": json.dumps(config or {}), f"{META}metrics": json.dumps(metrics or {})}
    if arch:
        meta[f"{META}arch"] = arch
    return {**meta, **(extra or {})}


def model_info(metadata: dict[str, str], *, source: str | os.PathLike = "weights") -> ModelInfo:
    """Read the schema from a file's metadata; files written before it (bare ``format``/``src``/``space`` keys, or
    ``latentbridge.space``/``latentbridge.domain``) read the same."""
    m = dict(metadata)
    try:
        if f"{META}kind" in m:
            spaces_ = m.get(f"{META}spaces") or m.get(f"{META}space", "")
            domains = m.get(f"{META}domains") or m.get(f"{META}domain", "")
            return ModelInfo(m[f"{META}kind"], _split(spaces_), _split(domains), m.get(f"{META}arch"),
                             json.loads(m.get(f"{META}config") or "{}"), json.loads(m.get(f"{META}metrics") or "{}"), m)
        kind = _LEGACY_FORMATS.get(m.get("format", ""))
        if kind == "interposer":
            return ModelInfo(kind, (m["src"], m["dst"]), (m["domain_in"], m["domain_out"]), m.get("arch", "bridge"),
                             json.loads(m["config"]), json.loads(m.get("metrics") or "{}"), m)
        if kind == "upscaler":
            return ModelInfo(kind, (m["space"],), (m.get("domain", "taesd"),), None, json.loads(m["config"]),
                             json.loads(m.get("metrics") or "{}"), m)
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsFormatError(f"{source}: broken model metadata ({type(e).__name__}: {e}); re-export the model") from None
    return ModelInfo(None, metadata=m)


def _split(text: str) -> tuple[str, ...]:
    return tuple(t for t in text.split(",") if t)


def state_mismatch(want: dict[str, torch.Tensor | torch.Size | tuple[int, ...]], have: dict[str, torch.Tensor]) -> str:
    """How ``have`` differs from the keys and shapes of ``want`` (a state dict or key -> shape): the sorted missing,
    unexpected and misshapen keys, eight of each at most; empty when it fits exactly. The one strict-load report."""
    shape = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in want.items()}
    missing = sorted(k for k in shape if k not in have)
    unexpected = sorted(k for k in have if k not in shape)
    wrong = sorted(k for k in shape if k in have and tuple(have[k].shape) != shape[k])

    def few(keys: list[str], show=str) -> str:
        return ", ".join(map(show, keys[:8])) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")

    parts = [f"{len(missing)} missing ({few(missing)})" if missing else "",
             f"{len(unexpected)} unexpected ({few(unexpected)})" if unexpected else "",
             f"{len(wrong)} with other shapes ({few(wrong, lambda k: f'{k} {tuple(have[k].shape)} != {shape[k]}')})"
             if wrong else ""]
    return "; ".join(p for p in parts if p)


def load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], *, source: str | os.PathLike) -> torch.nn.Module:
    """Load ``tensors`` into ``module`` (in its dtype: weights stored in float16 or bfloat16 upcast exactly into a
    float32 network) when they fit exactly; else :class:`WeightsFormatError` with :func:`state_mismatch`."""
    want = module.state_dict()
    mismatch = state_mismatch(want, tensors)
    if mismatch:
        raise WeightsFormatError(f"{source}: the weights do not fit the network its metadata describes: {mismatch}; "
                                 "re-export the model")
    module.load_state_dict({k: v.to(want[k].dtype) for k, v in tensors.items()})
    return module


CACHE_SIZE = 16
_models: OrderedDict[tuple, object] = OrderedDict()
_models_lock = threading.RLock()


def cached(paths: str | os.PathLike | Sequence[str | os.PathLike], key: tuple, make: Callable[[], T]) -> T:
    """``make()``, remembered per (file or files, their modification times and sizes, ``key``): a replaced file is
    read again. At most :data:`CACHE_SIZE` entries, least recently used first out; thread-safe."""
    many = isinstance(paths, Sequence) and not isinstance(paths, str)
    stats = [(p, _stat_file(p)) for p in (paths if many else [paths])]  # checked before they are looked at
    full = (*((os.path.abspath(p), st.st_mtime_ns, st.st_size) for p, st in stats), *key)
    with _models_lock:
        if full in _models:
            _models.move_to_end(full)
            return _models[full]  # type: ignore[return-value]
        value = make()
        _models[full] = value
        while len(_models) > CACHE_SIZE:
            _models.popitem(last=False)
        return value


def clear_cache() -> None:
    """Forget every model loaded through :func:`cached` / :func:`load_model`."""
    with _models_lock:
        _models.clear()


def load_model(path: str | os.PathLike, *, kind: str, build: Callable[[ModelInfo], torch.nn.Module],
               device: str | torch.device | None = None, dtype: torch.dtype | None = None,
               prepare: Callable[[torch.nn.Module], torch.nn.Module] | None = None) -> tuple[torch.nn.Module, ModelInfo]:
    """The network of one of our model files, cached: ``build(info)`` makes it from the file's metadata, the weights
    are loaded strictly (:func:`load_state`), then it goes to ``device``/``dtype`` in eval mode, frozen, and through
    ``prepare`` (an inference-only rewrite such as a fused layout). :class:`WeightsFormatError` when the file is not
    a ``kind`` model. ``build`` and ``prepare`` are part of the cache key: pass module-level functions."""
    device = devices.resolve(device)
    dtype = dtype or torch.float32

    def make() -> tuple[torch.nn.Module, ModelInfo]:
        tensors, meta = load_tensors(path)
        info = model_info(meta, source=path)
        if info.kind != kind:
            found = f"a {info.kind} file" if info.kind else "no latentbridge metadata"
            raise WeightsFormatError(f"{path}: not a latentbridge {kind} ({found})")
        try:
            built = build(info)
        except WeightsFormatError as e:
            raise WeightsFormatError(f"{path}: {e}") from None
        net = load_state(built, tensors, source=path)
        net = net.to(device, dtype).eval().requires_grad_(False)
        return (prepare(net) if prepare else net), info

    return cached(path, (kind, build, prepare, str(device), dtype), make)
