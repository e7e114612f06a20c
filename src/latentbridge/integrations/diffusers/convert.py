"""Convert latents between two diffusers pipelines (or their VAEs) through the interposers, no VAE round trip.

Each side is read from its own VAE config: ``scaling_factor``, ``shift_factor`` and ``latents_mean``/``latents_std``
map the pipeline's latents (what its sampler iterates on, ``output_type="latent"``) to the VAE's raw latent, which
is the interposer's ``raw`` domain whatever constants a pipeline uses. FLUX.1 pipelines carry 2x2 patches as tokens
``(B, L, 64)``; FLUX.2 pipelines carry the VAE latent patchified 2x2 and batch-norm normalised with the VAE's running
statistics (the registry's ``flux2`` raw domain, ComfyUI's LATENT), as tokens ``(B, L, 128)`` on output and as
``(B, 128, h, w)`` for ``latents=``. A bare VAE stands for its own raw latent (for FLUX.2: 32 channels, not
normalised), so ``vae.encode`` output can be converted straight into another pipeline's ``latents=``.

Video: Wan pipelines hold (B, C, T, H, W) latents normalised with the VAE config's ``latents_mean``/``latents_std``;
LTX pipelines hold them normalised with the VAE's ``latents_mean``/``latents_std`` buffers and packed as tokens
(B, T*H*W, C) (docs/video.md), which is ComfyUI's LTXV LATENT and the registry's ``ltxv`` raw domain once unpacked.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass, replace
from typing import Any

import torch

from ... import interposer, spaces
from ...errors import InputError
from .preview import pack_video_tokens, takes_video_tokens, unpack_tokens, unpack_video_tokens

_FAMILIES = "SD1.x/2.x, SDXL, SD3, FLUX.1, FLUX.2, Sana, Wan 2.1/2.2 and LTX-Video/LTX-2"


@dataclass(frozen=True)
class LatentForm:
    """How one pipeline's (or VAE's) latents relate to a registry space."""

    space: spaces.LatentSpace  # the registry space, with this VAE's own normalisation constants
    vae: Any  # the VAE whose config and statistics these come from
    vae_only: bool  # the latents are the VAE's own raw latents, not a pipeline's
    tokens: bool  # the pipeline's ``latents=`` takes FLUX.1-style tokens (B, L, 64) or LTX-style video tokens
    cell: int  # image pixels per token: 2x the pipeline's vae_scale_factor
    video_patch: tuple[int, int] | None = None  # (p, pt) of LTX-style video tokens (B, T/pt * H/p * W/p, C*pt*p*p)
    compression: tuple[int, int] = (1, 1)  # (frames, pixels) per latent cell in time and space, from the pipeline

    @property
    def is_flux2(self) -> bool:
        return self.space.packing is not None


def _vae_space(vae: Any) -> spaces.LatentSpace:
    """The space of a bare VAE: FLUX.2 by its batch-norm statistics (diffusers' and the tiny FLUX.2 VAE), others
    from the registry (:func:`latentbridge.spaces.from_diffusers`)."""
    if _has_batch_norm(vae):
        return spaces.get("flux2")
    return spaces.from_diffusers(vae, ask="from_space= / to_space=")


def _has_batch_norm(vae: Any) -> bool:
    return getattr(getattr(vae, "bn", None), "running_mean", None) is not None and "batch_norm_eps" in vae.config


def _normalised(space: spaces.LatentSpace, vae: Any) -> spaces.LatentSpace:
    """``space`` with the scaling constants ``vae``'s config states (model <-> raw as this pipeline does it)."""
    if space.packing is not None:
        return space
    config = vae.config
    mean, std = config.get("latents_mean"), config.get("latents_std")
    stats = (tuple(mean), tuple(std)) if mean is not None and std is not None else (None, None)
    if stats[0] is not None and not len(stats[0]) == len(stats[1]) == space.channels:
        raise InputError(f"the {type(vae).__name__} config's latents_mean/latents_std hold {len(stats[0])}/"
                         f"{len(stats[1])} values but {space.id} latents have {space.channels} channels: check the VAE "
                         "or pass from_space= / to_space=")
    return replace(space, scaling_factor=float(config.get("scaling_factor") or 1.0),
                   shift_factor=float(config.get("shift_factor") or 0.0), latents_mean=stats[0], latents_std=stats[1])


def _ltx_stats(vae: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An LTX VAE's per-channel latents_mean and latents_std buffers shaped (1, C, 1, 1, 1) like ``like``; the
    registry's ltxv raw domain (ComfyUI's LATENT) is the VAE's latent normalised by them, without the scaling factor
    that the pipelines multiply in on top."""
    shape = (1, -1, 1, 1, 1)
    return (vae.latents_mean.view(shape).to(like.device, like.dtype),
            vae.latents_std.view(shape).to(like.device, like.dtype))


def _takes_tokens(pipe: Any) -> bool:
    """Whether ``pipe(latents=...)`` expects FLUX.1-style packed tokens (its ``_pack_latents`` packs 2x2 patches)."""
    pack = getattr(type(pipe), "_pack_latents", None)
    return pack is not None and len(inspect.signature(pack).parameters) == 5


def latent_form(pipe_or_vae: Any, space: str | spaces.LatentSpace | None = None) -> LatentForm:
    """Describe the latents of a diffusers pipeline (anything with a ``.vae``) or of a VAE itself."""
    vae = getattr(pipe_or_vae, "vae", None)
    vae_only = vae is None
    if vae_only:
        vae = pipe_or_vae
    if getattr(vae, "config", None) is None:
        raise InputError(f"expected a diffusers pipeline with a .vae, or a VAE, got {type(pipe_or_vae).__name__}")
    sp = spaces.get(space) if space is not None else _vae_space(vae) if vae_only else spaces.from_diffusers(pipe_or_vae)
    if sp.ndim != 4 and sp.id not in ("wan21", "wan22", "ltxv"):
        raise InputError(f"convert_latents handles {_FAMILIES} pipelines and their VAEs; {sp.id} latents are not "
                         "among them")
    if sp.packing is not None and not _has_batch_norm(vae):
        raise InputError(f"a {sp.id} pipeline's VAE needs batch-norm statistics (vae.bn, vae.config.batch_norm_eps); "
                         f"{type(vae).__name__} has none: pass the FLUX.2 VAE (AutoencoderKLFlux2 or TinyFlux2VAE)")
    if sp.id == "ltxv" and vae_only and getattr(vae, "latents_std", None) is None:
        raise InputError(f"an ltxv VAE needs its latents_mean/latents_std buffers; {type(vae).__name__} has none: "
                         "pass AutoencoderKLLTXVideo or AutoencoderKLLTX2Video")
    scale = int(getattr(pipe_or_vae, "vae_scale_factor", 0) or sp.taesd_downscale)
    if not vae_only and takes_video_tokens(pipe_or_vae):
        patch = (int(getattr(pipe_or_vae, "transformer_spatial_patch_size", 1) or 1),
                 int(getattr(pipe_or_vae, "transformer_temporal_patch_size", 1) or 1))
        compression = (int(getattr(pipe_or_vae, "vae_temporal_compression_ratio", 0) or sp.temporal_downscale),
                       int(getattr(pipe_or_vae, "vae_spatial_compression_ratio", 0) or sp.downscale))
        return LatentForm(_normalised(sp, vae), vae, False, True, scale * 2, patch, compression)
    tokens = not vae_only and sp.id == "flux1" and _takes_tokens(pipe_or_vae)
    return LatentForm(_normalised(sp, vae), vae, vae_only, tokens, scale * 2)


def _bn_stats(vae: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The FLUX.2 VAE's running mean and std (sqrt(var + eps)) shaped (1, 128, 1, 1) like ``like``."""
    mean = vae.bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
    std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1).to(like.device, like.dtype) + vae.config.batch_norm_eps)
    return mean, std


def _grid(length: int, cell: int, height: int | None, width: int | None) -> tuple[int, int]:
    """(rows, columns) of ``length`` tokens: from the image size, or square when it is not given."""
    if height and width:
        rows, cols = height // cell, width // cell
    else:
        rows = cols = math.isqrt(length)
    if rows * cols != length:
        given = f"a {height}x{width} image gives {rows}x{cols}" if height and width else "they are not a square"
        raise InputError(f"{length} tokens do not form the token grid ({given}): pass height= and width= (the image "
                         f"size in pixels, multiples of {cell})")
    return rows, cols


def to_raw(latents: torch.Tensor, form: LatentForm, *, height: int | None = None, width: int | None = None,
           num_frames: int | None = None) -> torch.Tensor:
    """A side's latents -> the registry's raw domain (B, C, H, W), or (B, C, T, H, W) for video, float32."""
    x = latents.float()
    sp = form.space
    if x.ndim == 3 and form.video_patch is not None:
        if not (num_frames and height and width):
            raise InputError("LTX token latents (B, L, C) need num_frames=, height= and width= (the clip's frames and "
                             "pixels) to be placed on their frame grid")
        t, d = form.compression
        x = unpack_video_tokens(x, ((num_frames - 1) // t + 1, height // d, width // d), *form.video_patch)
    elif x.ndim == 3:
        if form.vae_only:
            raise InputError("a VAE's latents are (B, C, H, W); token-packed (B, L, C) latents come from a pipeline")
        rows, cols = _grid(x.shape[1], form.cell, height, width)
        x = unpack_tokens(x, sp, height=rows * form.cell, width=cols * form.cell, cell=form.cell)
    if form.vae_only and sp.id == "ltxv":  # the LTX VAE's own latent: normalise as the pipelines do
        spaces.validate(x, sp, "raw", finite=False)
        mean, std = _ltx_stats(form.vae, x)
        return (x - mean) / std
    if not form.is_flux2:
        spaces.validate(x, sp, "model" if not form.vae_only else "raw", finite=False)
        return x if form.vae_only else sp.from_model(x)
    if form.vae_only:  # the FLUX.2 VAE's own latent: patchify and normalise as the pipelines do
        if x.ndim != 4 or x.shape[1] != sp.packing.unpacked_channels:
            raise InputError(f"a FLUX.2 VAE latent is (B, {sp.packing.unpacked_channels}, H, W); got {tuple(x.shape)}")
        packed = spaces.pack(x, sp.packing.patch)
        mean, std = _bn_stats(form.vae, packed)
        return (packed - mean) / std
    spaces.validate(x, sp, "raw", finite=False)
    return x


def from_raw(raw: torch.Tensor, form: LatentForm, *, packed: bool | None = None) -> torch.Tensor:
    """Registry raw domain -> the latents a side takes (``packed``: tokens, for FLUX pipelines)."""
    sp = form.space
    tokens = form.tokens if packed is None else packed
    if tokens and (form.vae_only or sp.id not in ("flux1", "flux2", "ltxv")):
        raise InputError("only FLUX.1, FLUX.2 and LTX pipelines take token-packed latents: leave packed unset")
    if form.vae_only and sp.id == "ltxv":
        mean, std = _ltx_stats(form.vae, raw)
        return raw * std + mean
    if form.video_patch is not None:
        x = sp.to_model(raw)
        return pack_video_tokens(x, *form.video_patch) if tokens else x
    if form.is_flux2:
        if form.vae_only:
            mean, std = _bn_stats(form.vae, raw)
            return spaces.unpack(raw * std + mean, sp.packing.patch)
        x = raw
    else:
        x = raw if form.vae_only else sp.to_model(raw)
        if tokens:
            x = spaces.pack(x, 2)
    return x.flatten(2).transpose(1, 2) if tokens else x


@torch.no_grad()
def convert_latents(
    latents: torch.Tensor,
    from_pipe: Any,
    to_pipe: Any,
    *,
    height: int | None = None,
    width: int | None = None,
    num_frames: int | None = None,
    from_space: str | None = None,
    to_space: str | None = None,
    packed: bool | None = None,
    models_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Latents of ``from_pipe`` -> latents for ``to_pipe``, through the interposer route between their spaces.

    ``latents`` are what ``from_pipe``'s sampler works on (``output_type="latent"``: FLUX tokens included; FLUX.1
    also unpacked as (B, 16, H, W)), or a VAE's own latent when ``from_pipe`` is a VAE. ``height``/``width`` (image
    pixels) place tokens on their grid when it is not square; LTX video tokens also need ``num_frames`` (the clip's
    frames). The result is what ``to_pipe(latents=...)`` takes: tokens for FLUX.1 and LTX, (B, 128, h, w) for
    FLUX.2, (B, C, T, H, W) for Wan, (B, C, H, W) otherwise (``packed`` forces tokens on or off for FLUX and LTX
    pipelines), or the raw latent of ``to_pipe`` when it is a VAE, on the input's device and dtype. Video latents
    convert within their space (pipeline and VAE, or two configs); no interposer links video spaces. The spaces
    come from each pipeline (``from_space``/``to_space`` override); interposers are found as
    :func:`latentbridge.interposer.convert` finds them (``models_dir``; ``device`` is where they run).
    """
    if not isinstance(latents, torch.Tensor) or not latents.is_floating_point():
        raise InputError("latents must be a floating-point torch.Tensor")
    src, dst = latent_form(from_pipe, from_space), latent_form(to_pipe, to_space)
    raw = to_raw(latents, src, height=height, width=width, num_frames=num_frames)
    converted = interposer.convert(raw, src.space.id, dst.space.id, domain="raw", models_dir=models_dir, device=device)
    return from_raw(converted, dst, packed=packed).to(latents.device, latents.dtype)
