"""The upscale entry points: one function for tensors, one for ComfyUI ``LATENT`` dicts."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .. import limits, spaces
from ..errors import InputError
from .learned import LearnedUpscaler, upscale_learned
from .plain import PLAIN_METHODS, Scale, plain_method, resample, resample_frames, resample_in_domain, target_size

LEARNED = ("nn", "learned")
METHODS = ("nn", *PLAIN_METHODS)  # what a user picks from: the learned upscaler, then the plain methods


def upscale(
    latent: torch.Tensor,
    space: str | spaces.LatentSpace,
    scale: Scale | None = None,
    *,
    method: str = "nn",
    domain: spaces.Domain = spaces.DEFAULT_DOMAIN,
    size: Sequence[int] | None = None,
    model: str | os.PathLike | LearnedUpscaler | None = None,
    frames: int | None = None,
) -> torch.Tensor:
    """Resize a latent of ``space`` in ``domain`` (raw, model or taesd; the model domain by default, as everywhere:
    :data:`latentbridge.spaces.DEFAULT_DOMAIN`) by ``scale`` (or to ``size``, latent pixels in that domain) with
    ``method``: 'nn' (the learned upscaler; ``model`` picks a file other than the space's own) or a plain one
    (nearest, bilinear, bicubic, area, antialias). Returns a new tensor in the same domain, on the input's device and
    dtype.

    A video latent (B, C, T, H, W) is resized frame by frame and keeps its T frames; ``frames`` also resamples its
    frame axis to that many latent frames (see :func:`~latentbridge.upscale.plain.resample_frames`: linear between
    neighbouring frames, first and last kept; ``2T - 1`` doubles the frame rate; nearest with method 'nearest').
    """
    sp = spaces.get(space)
    _check_result(latent, sp, domain, scale, size, frames)
    if isinstance(method, str) and method.lower() in LEARNED:
        out = upscale_learned(latent, sp, scale, domain=domain, size=size, model=model)
    else:
        spaces.validate(latent, sp, domain, finite=False)
        out = resample_in_domain(latent, sp, target_size(latent.shape[-2:], scale, size), plain_method(method), domain)
    if frames is None:
        return out
    return resample_frames(out, frames, "bilinear" if method.lower() in LEARNED else method)


def _check_result(latent: torch.Tensor, sp: spaces.LatentSpace, domain: str, scale: Scale | None,
                  size: Sequence[int] | None, frames: int | None) -> None:
    """Refuse an empty latent, or a result above the size limit, before either method allocates anything."""
    if not isinstance(latent, torch.Tensor) or latent.ndim < 3 or domain not in spaces.DOMAINS:
        return  # the method's own checks say what is wrong
    limits.check_not_empty(latent)
    h, w = target_size(latent.shape[-2:], scale, size)
    count, fix = limits.items(latent), "use a smaller scale= or size="
    if latent.ndim == 5 and isinstance(frames, int) and frames > 0:
        count, fix = latent.shape[0] * frames, f"{fix}, or fewer frames="
    d = sp.downscale_in(domain)
    limits.check_pixels(count, h * d, w * d, what="the upscaled latent", fix=fix)


def upscale_samples(
    samples: Mapping[str, Any],
    space: str | spaces.LatentSpace,
    scale: Scale | None = None,
    *,
    method: str = "nn",
    domain: str = "raw",
    size: Sequence[int] | None = None,
    model: str | os.PathLike | LearnedUpscaler | None = None,
    frames: int | None = None,
) -> dict[str, Any]:
    """Upscale a ComfyUI ``LATENT`` dict (``samples`` in ``domain``, raw by default): a new dict with every extra
    key kept, ``noise_mask`` resized to match (it may be at latent or at image resolution) and ``batch_index`` as is.
    ``frames`` resamples a video latent's frame axis as :func:`upscale` does.
    """
    if "samples" not in samples or not isinstance(samples["samples"], torch.Tensor):
        raise InputError("a LATENT dict needs a 'samples' tensor")
    sp = spaces.get(space)
    latent = samples["samples"]
    mask = samples.get("noise_mask")
    if frames is not None and mask is not None:
        raise InputError("cannot resample the frames of a latent that carries a noise_mask (its frames would no "
                         "longer match): drop the mask, or resample without frames=")
    mask_size = _mask_target(mask, latent, sp, domain, scale, size) if mask is not None else None
    out = dict(samples)
    out["samples"] = upscale(latent, sp, scale, method=method, domain=domain, size=size, model=model, frames=frames)
    if mask is not None:
        out["noise_mask"] = _resize_mask(mask, mask_size)
    return out


def _mask_target(mask: Any, latent: torch.Tensor, sp: spaces.LatentSpace, domain: str,
                 scale: Scale | None, size: Sequence[int] | None) -> tuple[int, int]:
    """The mask's new (H, W): it follows the latent, at latent or at image resolution, whichever it has now."""
    if not isinstance(mask, torch.Tensor) or mask.ndim < 2:
        raise InputError("noise_mask must be a tensor of shape (..., H, W)")
    h, w = latent.shape[-2:]
    new_h, new_w = target_size((h, w), scale, size)
    d = sp.downscale_in(domain)
    mh, mw = mask.shape[-2:]
    if (mh, mw) == (h, w):
        return new_h, new_w
    if (mh, mw) == (h * d, w * d):
        return new_h * d, new_w * d
    raise InputError(f"noise_mask is {mh}x{mw} but the {h}x{w} latent needs a mask of {h}x{w} (latent pixels) or "
                     f"{h * d}x{w * d} (image pixels): resize the mask to one of those first")


def _resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a soft mask without overshoot (bilinear, antialiased when shrinking)."""
    x = mask if mask.is_floating_point() else mask.float()
    x = x if x.ndim >= 3 else x[None]
    out = resample(x, size, "antialias")
    return out if mask.ndim >= 3 else out[0]
