"""``load()``: a TAESD-family model from a name, a file or two, cached per (files, device, dtype).

Names are the registry's tiny autoencoders (:func:`latentbridge.spaces.tiny_names`: ``taesd``, ``taesdxl``, ``taesd3``,
``taef1``, ``taef2``, ``taesana``, ..., each also with ``_encoder`` / ``_decoder``), looked up through
:func:`latentbridge.weights.resolve` (folder ``vae_approx``): first the two upstream half files (``<name>_encoder.*``,
``<name>_decoder.*``), then a combined file (``<name>.*``), then the Hugging Face cache and hub where the registry
knows a published combined file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .. import devices, spaces, weights
from ..errors import InputError, WeightsFormatError, WeightsNotFoundError
from . import arch, layouts, taehv, video
from .model import TinyAutoencoder

FOLDER = "vae_approx"
NAMES = spaces.tiny_names(video=False)  # the image models registered at import, for listings
_SUFFIXES = (".safetensors", ".pth", ".pt")
_UPSTREAM = "https://github.com/madebyollin/taesd"

PathLike = str | os.PathLike


def split_name(name: str) -> tuple[str, str | None] | None:
    """``"taef2_decoder"`` -> ``("taef2", "decoder")``; ``"taef2"`` -> ``("taef2", None)``; None if not a known name."""
    key = name.lower()
    for part in layouts.HALVES:
        if key.endswith("_" + part) and _image_model(key[: -len(part) - 1]):
            return key[: -len(part) - 1], part
    return (key, None) if _image_model(key) else None


def _image_model(name: str) -> spaces.TinyModel | None:
    found = spaces.tiny_model(name)
    return found[0] if found and not found[0].video else None


def space_of(name: str) -> spaces.LatentSpace | None:
    """The registry space whose tiny autoencoder is ``name`` (the first that lists it, e.g. sdxl for taesdxl)."""
    found = spaces.tiny_model(name)
    return found[1] if found else None


def locate(name: str, *, models_dir: PathLike | None = None, download: bool | None = None) -> list[Path]:
    """The files that hold the named model: both halves, a combined file, or the one half that exists.

    ``download`` (default: unless offline mode is on) allows fetching a published combined file from the hub.
    """
    if video.is_published(name):  # one file per video model, named as published (madebyollin/taehv)
        return [weights.resolve(name, filenames=_files(name.lower()), folder=FOLDER, models_dir=models_dir,
                                allow_download=False)]
    split = split_name(name)
    if split is None:
        return [weights.resolve(name, folder=FOLDER, models_dir=models_dir, allow_download=download)]
    base, part = split
    wanted = [part] if part else list(layouts.HALVES)
    found = []
    for half in wanted:
        try:
            found.append(weights.resolve(f"{base}_{half}", filenames=_files(f"{base}_{half}"), folder=FOLDER,
                                         models_dir=models_dir, allow_download=False))
        except WeightsNotFoundError:
            pass
    if len(found) == len(wanted):
        return found
    published = _image_model(base)
    hub = [published.hub] if published and published.hub else []
    try:
        return [weights.resolve(base, filenames=_files(base), folder=FOLDER, hub=hub, models_dir=models_dir,
                                allow_download=download)]
    except WeightsNotFoundError as e:
        if found:
            return found  # one half is all there is; load it alone
        halves = " and ".join(f"{base}_{h}.pth" for h in wanted)
        raise WeightsNotFoundError(f"tiny autoencoder {name!r} not found: no {base}_{{encoder,decoder}}"
                                   f".{{safetensors,pth}} and no combined file. {e}. Get {halves} from {_UPSTREAM}"
                                   + (f" or {hub[0]}" if hub else ""),
                                   filenames=[f"{base}_{h}.pth" for h in wanted], folder=FOLDER) from None


def _files(stem: str) -> list[str]:
    return [stem + s for s in _SUFFIXES]


def load(name_or_path: PathLike | Sequence[PathLike], *, device: str | torch.device | None = None,
         dtype: torch.dtype | None = None, space: str | spaces.LatentSpace | None = None,
         models_dir: PathLike | None = None, download: bool | None = None) -> TinyAutoencoder:
    """A tiny autoencoder (eval mode, frozen, cached) from a known name, a weight file, or a pair of files.

    ``device`` defaults to CPU and ``dtype`` to float32 whatever the file stores. The variant and channel count
    come from the weights; the latent space (needed for the raw/model domains) from ``space``, the name, the
    file's metadata, ComfyUI's vae_scale/vae_shift, or the variant where only one space uses it. Names are
    looked up in ``models_dir`` only when given; ``download`` as in :func:`locate`. The returned model is shared
    by every caller asking for the same files, device and dtype: ``copy.deepcopy`` it before changing it in place.
    """
    device = devices.resolve(device)
    dtype = dtype or torch.float32
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InputError(f"dtype={dtype!r} is not a floating-point torch.dtype: use torch.float32, torch.bfloat16 or "
                         "torch.float16")
    if isinstance(name_or_path, (str, os.PathLike)):
        label = str(name_or_path)
        split = split_name(label) if not Path(label).is_file() else None
        paths = locate(label, models_dir=models_dir, download=download)
    elif isinstance(name_or_path, Sequence) and len(name_or_path) in (1, 2) and all(
            isinstance(p, str | os.PathLike) for p in name_or_path):
        label, split, paths = " + ".join(map(str, name_or_path)), None, [Path(p) for p in name_or_path]
    else:
        raise InputError(f"name_or_path= is a tiny autoencoder's name, its file, or its (encoder, decoder) files; got "
                         f"{name_or_path!r}")
    want = spaces.get(space) if space is not None else None
    part = split[1] if split else None
    return weights.cached(paths, ("tiny", part, str(device), dtype, want.id if want else None),
                          lambda: _build(paths, part=part, name=split[0] if split else None, label=label, space=want,
                                         device=device, dtype=dtype))


clear_cache = weights.clear_cache  # the one model cache (kept under this name for callers of tiny.clear_cache)


def _build(paths: Sequence[Path], *, part: str | None, name: str | None, label: str,
           space: spaces.LatentSpace | None, device: torch.device, dtype: torch.dtype) -> TinyAutoencoder:
    halves: dict[str, layouts.Half] = {}
    scale = shift = None
    meta_space = None
    loaded = [weights.load_tensors(path) for path in paths]
    if len(loaded) == 1 and taehv.is_video(loaded[0][0]):
        return video.build(*loaded[0], label=label, path=paths[0], space=space,
                           prepare=lambda t: _prepare(t, device, dtype))
    for path, (tensors, metadata) in zip(paths, loaded, strict=True):
        parsed = layouts.parse(tensors, source=str(path))
        for role, half in parsed.halves.items():
            if role in halves:
                raise WeightsFormatError(f"{label}: more than one {role} among {', '.join(map(str, paths))}; "
                                         "pass one encoder file and one decoder file")
            halves[role] = half
        scale = parsed.vae_scale if parsed.vae_scale is not None else scale
        shift = parsed.vae_shift if parsed.vae_shift is not None else shift
        meta_space = metadata.get("latentbridge.space") or metadata.get("space") or meta_space
    if part is not None:
        if part not in halves:
            raise WeightsFormatError(f"{label}: the file found ({', '.join(map(str, paths))}) holds no {part}")
        halves = {part: halves[part]}
    shapes = {(h.variant, h.latent_channels) for h in halves.values()}
    if len(shapes) != 1:
        desc = ", ".join(f"{h.role}: {h.variant} with {h.latent_channels} channels" for h in halves.values())
        raise WeightsFormatError(f"{label}: the encoder and decoder do not belong together ({desc})")
    variant, channels = shapes.pop()
    nets = {}
    for role, half in halves.items():
        with torch.device("meta"):  # no initialisation: every tensor comes from the file
            net = layouts.build(role, variant, channels)
        net.load_state_dict({k: _prepare(v, device, dtype) for k, v in half.state.items()}, strict=True, assign=True)
        nets[role] = net
    found_space = space or _infer_space(name, meta_space, scale, shift, variant, channels)
    if found_space is not None and found_space.taesd_channels != channels:
        raise WeightsFormatError(f"{label}: a {channels}-channel model cannot serve {found_space.id} "
                                 f"({found_space.taesd_channels} channels in the taesd domain)")
    if found_space is not None and found_space.downscale_in("taesd") != arch.DOWNSCALE[variant]:
        raise WeightsFormatError(f"{label}: a {variant} model works at 1/{arch.DOWNSCALE[variant]} of the picture, "
                                 f"{found_space.id} latents at 1/{found_space.downscale_in('taesd')}: it cannot serve "
                                 f"{found_space.id}; load that space's tiny autoencoder")
    model = TinyAutoencoder(variant=variant, latent_channels=channels, encoder=nets.get("encoder"),
                            decoder=nets.get("decoder"), space=found_space, name=name and (name + (f"_{part}" if part else "")))
    return model.eval().requires_grad_(False)


def _prepare(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """One copy per tensor onto the target; conv weights channels-last, as the fast pass convolves them."""
    fmt = torch.channels_last if t.ndim == 4 else torch.preserve_format
    return t.to(device=device, dtype=dtype, memory_format=fmt, copy=True)


def _infer_space(name: str | None, meta_space: str | None, scale: float | None, shift: float | None,
                 variant: str, channels: int) -> spaces.LatentSpace | None:
    if name is not None:
        return space_of(name)
    if meta_space:
        return spaces.get(meta_space)
    candidates = [s for s in spaces.all() if s.tiny and s.taesd_channels == channels and s.latents_std is None]
    if scale is not None and scale != 1.0:
        hits = [s for s in candidates if abs(s.scaling_factor - scale) < 1e-4 and abs(s.shift_factor - (shift or 0.0)) < 1e-4]
        if len(hits) == 1:
            return hits[0]
    # a variant that only one published model has (flux_2: TAEF2, f32: TAESana) names its space
    users = {m.name for s in spaces.all() for m in s.tiny_models if m.variant == variant and not m.video}
    return space_of(users.pop()) if len(users) == 1 else None
