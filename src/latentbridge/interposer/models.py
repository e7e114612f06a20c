"""Interposer model files: the published v4.0 set, our own files, where they are found, and loading them.

Two architectures of file:

* **v4.0** (city96/SD-Latent-Interposer): ``{src}-to-{dst}_interposer-v4.0.safetensors`` with the interposer
  codes (v1, xl, v3, fx, ca); no metadata, so a file counts only under its published name. Raw latents in and out.
* **bridge** (latentbridge): any name; the safetensors metadata states ``format``, the spaces, the domains the
  network was trained on and its :class:`~latentbridge.interposer.net.BridgeConfig`.

Files are looked up like every weight (:func:`latentbridge.weights.resolve`): an explicit path, the user's model
folders (each also in its ``interposers`` subfolder), the Hugging Face cache, then the hub unless offline.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import hub as _hub
from .. import spaces, weights
from ..errors import LatentBridgeError, WeightsFormatError, WeightsNotFoundError
from ..weights import HubFile
from .net import BridgeConfig, BridgeNet
from .v4 import FusedV4, V4Config, V4Interposer, load_v4

FOLDER = "interposers"  # model-folder subfolder searched for interposers
KIND = "interposer"
LEGACY_FORMAT = "latentbridge.interposer/1"  # files written before the one schema
V4_REPO, V4_SUBFOLDER = "city96/SD-Latent-Interposer", "v4.0"
# The published pairs (docs/interposer.md): sources v1, xl, v3, fx, ca; targets v1, xl, v3.
V4_PAIRS = (("v1", "xl"), ("v1", "v3"), ("xl", "v1"), ("xl", "v3"), ("v3", "v1"), ("v3", "xl"),
            ("fx", "v1"), ("fx", "xl"), ("fx", "v3"), ("ca", "v1"), ("ca", "xl"), ("ca", "v3"))


def v4_filename(src: str | spaces.LatentSpace, dst: str | spaces.LatentSpace) -> str:
    """Published file name of the v4.0 model for a pair of spaces (by id, alias or code)."""
    a, b = spaces.get(src), spaces.get(dst)
    if not (a.interposer_code and b.interposer_code):
        raise WeightsNotFoundError(f"v4.0 has no model for {a.id} -> {b.id}: only interposer codes exist for "
                                   f"{', '.join(s.id for s in spaces.all() if s.interposer_code)}")
    return f"{a.interposer_code}-to-{b.interposer_code}_interposer-v4.0.safetensors"


def _v4_scale(src: spaces.LatentSpace, dst: spaces.LatentSpace) -> float:
    """The nearest-resize factor of a v4.0 pair: ``ca`` (/4) into /8 spaces is 0.5 (docs/interposer.md)."""
    return src.downscale / dst.downscale


@dataclass(frozen=True)
class ModelEntry:
    """One interposer the planner can use: a file on disk, or a published file on the hub."""

    src: str  # space id
    dst: str
    arch: str  # "v4" (the published network) | "bridge" (ours)
    location: Path | HubFile
    domain_in: str = "raw"
    domain_out: str = "raw"
    flops_per_pixel: float = 0.0  # per input latent pixel, in domain_in
    metrics: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def local(self) -> bool:
        return isinstance(self.location, Path)

    def gflops_per_megapixel(self) -> float:
        """Work per megapixel of the image the latent stands for."""
        d = spaces.get(self.src).downscale_in(self.domain_in)
        return self.flops_per_pixel * 1e6 / (d * d) / 1e9

    def describe(self) -> str:
        where = str(self.location) if self.local else f"{self.location} (download)"
        return f"{self.src} -> {self.dst} [{self.arch}, {self.domain_in} latents] {where}"


def v4_entry(src: str, dst: str, location: Path | HubFile) -> ModelEntry:
    """The entry of a published v4.0 pair (shapes follow from the spaces)."""
    a, b = spaces.get(src), spaces.get(dst)
    config = V4Config(a.channels, b.channels, 64, 12, _v4_scale(a, b))
    return ModelEntry(a.id, b.id, "v4", location, "raw", "raw", config.flops_per_pixel())


def read_header(path: Path) -> dict[str, str] | None:
    """The metadata of a safetensors file, or None when the file is not one (cached while the file is unchanged:
    :func:`discover` reads every header on each conversion)."""
    try:
        st = path.stat()
    except OSError:
        return None
    meta = _header(str(path), st.st_mtime_ns, st.st_size)
    return None if meta is None else dict(meta)


@functools.lru_cache(maxsize=256)
def _header(path: str, mtime_ns: int, size: int) -> dict[str, str] | None:
    try:
        return weights.safetensors_header(path).metadata
    except WeightsFormatError:
        return None


def bridge_entry(path: Path, meta: dict[str, str] | None = None) -> ModelEntry:
    """The entry of one of our files, from its metadata."""
    meta = read_header(path) if meta is None else meta
    info = weights.model_info(meta or {}, source=path)
    if info.kind != KIND:
        raise WeightsFormatError(f"{path}: not a latentbridge interposer (its metadata names no interposer); "
                                 "v4.0 files must keep their published names")
    try:
        config = _config(info)
        src, dst = (spaces.get(s).id for s in info.spaces)
        domain_in, domain_out = info.domains
        return ModelEntry(src, dst, "bridge", path, domain_in, domain_out, config.flops_per_pixel(), info.metrics)
    except (LatentBridgeError, TypeError, ValueError) as e:
        raise WeightsFormatError(f"{path}: broken interposer metadata ({e}); re-export the model") from None


def _config(info: weights.ModelInfo) -> BridgeConfig | V4Config:
    """The network shape our metadata states: arch ``bridge`` (default) or ``v4`` (the v4.0 layout)."""
    arch = info.arch or "bridge"
    if arch == "v4":
        return V4Config(**info.config)
    if arch != "bridge":
        raise ValueError(f"unknown arch {arch!r}")
    return BridgeConfig.from_json(json.dumps(info.config))


@functools.cache
def _v4_names() -> dict[str, tuple[str, str]]:
    """Published file name -> (src, dst) space ids."""
    return {v4_filename(a, b): (spaces.get(a).id, spaces.get(b).id) for a, b in V4_PAIRS}


def _folders(models_dir: str | os.PathLike | None) -> list[Path]:
    if models_dir is not None:
        root = weights.models_folder(models_dir)
        return [root / FOLDER, root]
    return weights.search_dirs(FOLDER)


def discover(models_dir: str | os.PathLike | None = None, *, hub: bool | None = None) -> list[ModelEntry]:
    """Every interposer available: files in the model folders (only ``models_dir`` when given), the published
    v4.0 files in the Hugging Face cache, and (unless offline, or ``hub=False``) those on the hub.

    With ``models_dir`` given and offline mode on, only the files found in ``models_dir`` count.
    """
    download = (not weights.offline()) if hub is None else hub
    found: dict[tuple[str, str, str], ModelEntry] = {}
    v4_names = _v4_names()
    for folder in _folders(models_dir):
        for d in (folder, folder / V4_SUBFOLDER):
            if not d.is_dir():
                continue
            for path in sorted(d.glob("*.safetensors")):
                if path.name in v4_names:
                    src, dst = v4_names[path.name]
                    found.setdefault((src, dst, "v4"), v4_entry(src, dst, path))
                    continue
                meta = read_header(path)
                if meta and _is_ours(meta):
                    entry = bridge_entry(path, meta)
                    found.setdefault((entry.src, entry.dst, "bridge"), entry)
    use_cache = models_dir is None or download
    in_cache = use_cache and _hub.repo_cached(V4_REPO)
    for name, (src, dst) in v4_names.items():
        if (src, dst, "v4") in found or not use_cache:
            continue
        hub_file = HubFile(V4_REPO, name, V4_SUBFOLDER)
        # the folders were listed above: only the hub cache is left to look in
        path = _hub.cached(hub_file) if in_cache else None
        if path is not None or download:
            found[(src, dst, "v4")] = v4_entry(src, dst, path or hub_file)
    return list(found.values())


def locate(entry: ModelEntry, models_dir: str | os.PathLike | None = None) -> Path:
    """The file of ``entry`` on disk, downloading a published v4.0 file (through the HF cache) when needed."""
    if isinstance(entry.location, Path):
        return entry.location
    return weights.resolve(entry.location.filename, filenames=[entry.location.filename], folder=FOLDER,
                           hub=[entry.location], models_dir=models_dir, allow_download=True)


def load_file(path: str | os.PathLike, *, src: str | None = None, dst: str | None = None) -> tuple[torch.nn.Module, ModelEntry]:
    """Build the network stored in ``path`` (a bridge file, or a v4.0 file whose spaces are given or in its name)."""
    path = Path(path)
    tensors, meta = weights.load_tensors(path)
    if _is_ours(meta):
        entry = bridge_entry(path, meta)
        config = _config(weights.model_info(meta, source=path))
        if isinstance(config, V4Config):
            return load_v4(tensors, scale=config.scale, source=str(path)), entry
        net = weights.load_state(BridgeNet(config), tensors, source=path)
        return net.eval(), entry
    if src is None or dst is None:
        names = _v4_names()
        if path.name not in names:
            raise WeightsFormatError(f"{path}: neither a latentbridge interposer (no metadata) nor a v4.0 file under "
                                     "its published name ({src}-to-{dst}_interposer-v4.0.safetensors); say which "
                                     "spaces it converts")
        src, dst = names[path.name]
    a, b = spaces.get(src), spaces.get(dst)
    net = load_v4(tensors, scale=_v4_scale(a, b), source=str(path))
    if net.config.ch_in != a.channels or net.config.ch_out != b.channels:
        raise WeightsFormatError(f"{path}: maps {net.config.ch_in} to {net.config.ch_out} channels, but {a.id} -> "
                                 f"{b.id} needs {a.channels} -> {b.channels}")
    return net, v4_entry(a.id, b.id, path)


def no_denormals(t: torch.Tensor) -> torch.Tensor:
    """``t`` with values below float32's smallest normal number set to 0: they change nothing but make CPU
    arithmetic several times slower."""
    return torch.where(t.abs() < torch.finfo(torch.float32).tiny, torch.zeros_like(t), t)


def inference_net(path: Path, entry: ModelEntry, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The network of ``path`` ready for inference on ``device``/``dtype`` (v4.0 nets fused), cached by the one
    model cache (:func:`latentbridge.weights.cached`)."""

    def make() -> torch.nn.Module:
        net, _ = load_file(path, src=entry.src, dst=entry.dst)
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(no_denormals(p))
        if isinstance(net, V4Interposer):
            net = FusedV4(net)
        # channels-last weights, like the activations run_route hands in: oneDNN skips its layout reorders
        return net.to(device, dtype, memory_format=torch.channels_last).eval().requires_grad_(False)

    return weights.cached(path, (KIND, entry.src, entry.dst, str(device), dtype), make)


def bridge_metadata(net: BridgeNet | V4Interposer, *, src: str, dst: str, domain_in: str, domain_out: str,
                    metrics: dict | None = None) -> dict[str, str]:
    """The safetensors metadata of one of our interposers (what :func:`bridge_entry` reads back)."""
    arch = "v4" if isinstance(net, V4Interposer) else "bridge"
    return weights.model_metadata(kind=KIND, spaces=[spaces.get(src).id, spaces.get(dst).id],
                                  domains=[domain_in, domain_out], arch=arch, config=asdict(net.config),
                                  metrics=metrics)


def _is_ours(meta: dict[str, str]) -> bool:
    """Whether safetensors metadata marks one of our interposers (the one schema, or the format key before it)."""
    return meta.get(f"{weights.META}kind") == KIND or meta.get("format") == LEGACY_FORMAT
