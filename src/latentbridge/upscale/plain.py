"""Plain latent resampling: nearest, bilinear, bicubic, area and antialiased, at any ratio, in any domain.

Bilinear, bicubic, area and antialiased weights sum to one, so they commute with the affine maps between the raw,
model and taesd domains; only the FLUX.2 2x2 packing does not commute, so packed latents are resampled unpacked.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .. import limits, spaces
from ..errors import InputError

# name -> (F.interpolate mode, antialias)
PLAIN_METHODS: dict[str, tuple[str, bool]] = {
    "nearest": ("nearest-exact", False),
    "bilinear": ("bilinear", False),
    "bicubic": ("bicubic", False),
    "area": ("area", False),
    "antialias": ("bilinear", True),  # a triangle filter widened by the ratio on downscale: no aliasing
}
ALIASES = {"nearest-exact": "nearest", "nearest_exact": "nearest", "linear": "bilinear", "cubic": "bicubic",
           "box": "area", "antialiased": "antialias", "aa": "antialias"}

Scale = float | Sequence[float]


def plain_method(name: str) -> str:
    """Canonical name of a plain method, or an :class:`InputError` listing them."""
    key = ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else None
    if key not in PLAIN_METHODS:
        raise InputError(f"unknown upscale method {name!r}: use one of {', '.join(PLAIN_METHODS)} or 'nn' (learned)")
    return key


def target_size(hw: Sequence[int], scale: Scale | None = None, size: Sequence[int] | None = None) -> tuple[int, int]:
    """Output (H, W) for an input of ``hw``: ``size`` itself, or ``round(h * sy), round(w * sx)``."""
    if (scale is None) == (size is None):
        raise InputError("give either scale= or size= (a target size), not both and not neither")
    if size is not None:
        try:  # whole numbers only: int() would cut 8.5 to 8, and a text "64" would be read as (6, 4)
            out = tuple(operator.index(v) for v in size)
        except TypeError:
            out = ()
        if len(out) != 2 or min(out) < 1:
            raise InputError(f"size={size!r} is not a (height, width) pair of whole numbers >= 1")
        return out  # type: ignore[return-value]
    sy, sx = _pair(scale)
    h, w = int(hw[0]), int(hw[1])
    if not math.isfinite(h * sy) or not math.isfinite(w * sx):
        raise InputError(f"scale={scale!r} makes a latent too large to have a size; use a smaller scale")
    return max(1, round(h * sy)), max(1, round(w * sx))


def pixel_size(hw: Sequence[int], space: spaces.LatentSpace, domain: str, *, width: int | None = None,
               height: int | None = None) -> tuple[int, int]:
    """Latent (H, W) for a target image size in pixels; one side alone keeps the aspect ratio of ``hw``."""
    if width is None and height is None:
        raise InputError("say how big the result should be: scale=, or width= and/or height= in pixels")
    d = space.downscale_in(domain)
    for name, value in (("width", width), ("height", height)):
        if value is not None and (value < d or value % d):
            near = sorted({m for m in (value - value % d, value - value % d + d) if m >= d}) or [d]
            raise InputError(f"{name}={value} is not a positive multiple of {space.id}'s {d}-pixel latent cells in "
                             f"the {domain} domain: use {' or '.join(map(str, near))}")
    h, w = int(hw[0]), int(hw[1])
    out_w = width // d if width is not None else max(1, round(w * (height // d) / h))
    out_h = height // d if height is not None else max(1, round(h * out_w / w))
    return out_h, out_w


def _pair(scale: Scale) -> tuple[float, float]:
    items = (scale, scale) if isinstance(scale, numbers.Real) else () if isinstance(scale, str) else scale
    try:  # numbers only: a text "22" was read as (2, 2), True as 1
        pair = tuple(float(s) for s in items if isinstance(s, numbers.Real) and not isinstance(s, bool))
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(math.isfinite(s) and s > 0 for s in pair):
        raise InputError(f"scale={scale!r} is not a positive number or a (height, width) pair of them")
    return pair  # type: ignore[return-value]


def resample(x: torch.Tensor, size: Sequence[int], method: str = "bicubic") -> torch.Tensor:
    """Resize the last two dimensions of a 3-, 4- or 5-D tensor to ``size`` (leading dimensions are folded)."""
    mode, antialias = PLAIN_METHODS[plain_method(method)]
    size = (int(size[0]), int(size[1]))
    if x.ndim < 3:
        raise InputError(f"cannot resample a tensor of shape {tuple(x.shape)}: it needs (..., H, W) with a channel axis")
    if tuple(x.shape[-2:]) == size:
        return x.clone()
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:]) if x.ndim != 4 else x
    # CPU kernels lack some half-precision modes; resample in float32 and give back the input's dtype.
    work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(work, size=size, mode=mode, antialias=antialias, **kwargs).to(x.dtype)
    return out.reshape(*lead, *size) if x.ndim != 4 else out


def resample_frames(latent: torch.Tensor, frames: int, method: str = "bilinear") -> torch.Tensor:
    """Resample the frame axis of a video latent (B, C, T, H, W) to ``frames`` latent frames; a new tensor.

    Linear between neighbouring latent frames with the first and last kept as they are (``align_corners``): ``2T - 1``
    frames keep every original frame and put one blended frame between each pair (twice the frame rate), ``(T + 1)
    / 2`` keeps every other one. ``nearest`` repeats or drops whole frames instead of blending. A latent frame stands
    for the space's ``temporal_downscale`` pixel frames (the first for one, in causal video VAEs), so a decoded clip
    has about ``1 + (frames - 1) * temporal_downscale`` frames. The weights sum to one, so this commutes with the
    affine maps between domains. Blending latents is not motion interpolation: fast motion shows as a cross-fade.
    """
    limits.check_whole("frames", frames, unit="latent frames")
    if latent.ndim != 5:
        raise InputError(f"frames= resamples the frame axis of a video latent (B, C, T, H, W); this latent has shape "
                         f"{tuple(latent.shape)}")
    b, c, t, h, w = latent.shape
    if frames == t:
        return latent.clone()
    flat = latent.permute(0, 1, 3, 4, 2).reshape(-1, 1, t)
    work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    if plain_method(method) == "nearest":
        out = F.interpolate(work, size=frames, mode="nearest-exact")
    elif t == 1:
        out = work.expand(-1, -1, frames)
    else:
        out = F.interpolate(work, size=frames, mode="linear", align_corners=True)
    return out.to(latent.dtype).reshape(b, c, h, w, frames).permute(0, 1, 4, 2, 3).contiguous()


def resample_in_domain(latent: torch.Tensor, sp: spaces.LatentSpace, size: tuple[int, int], method: str,
                       domain: spaces.Domain) -> torch.Tensor:
    """Resample a checked latent of ``sp`` in ``domain`` to ``size`` (latent pixels in that domain). Packed spaces
    (FLUX.2) are resampled unpacked, so the size in a packed domain must be whole patches.
    """
    if sp.packing is None or domain == "taesd":
        return resample(latent, size, method)
    p = sp.packing.patch
    unpacked = spaces.convert_domain(latent, sp, domain, "taesd")
    out = resample(unpacked, (size[0] * p, size[1] * p), method)
    return spaces.convert_domain(out, sp, "taesd", domain)
