"""``preview()``: any latent of a known space to RGB in [0, 1], by linear factors, the neural previewer or a tiny
decoder; non-finite latent pixels show as a magenta marker instead of failing."""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from .. import devices, limits, spaces
from ..errors import InputError, LatentBridgeError
from . import neural
from .factors import Factors, default_factors, load_factors

METHODS = ("linear", "neural", "tiny")
MARKER = (1.0, 0.0, 1.0)  # magenta: where the latent holds NaN or infinity


def preview(
    latent: torch.Tensor,
    space: str | spaces.LatentSpace,
    *,
    method: str = "linear",
    domain: spaces.Domain = spaces.DEFAULT_DOMAIN,
    factors: Factors | str | os.PathLike | None = None,
    previewer: str | os.PathLike | None = None,
    size: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """Latent (B, C, H, W) -> RGB (B, 3, h, w) in [0, 1]; a video latent (B, C, T, H, W) -> (B, 3, T, h, w), one
    preview per latent frame (the layout says which: a 5-D tensor is always frames, whatever its sizes).

    ``domain`` says what ``latent`` is: ``model`` (default: what samplers and diffusers callbacks hand over),
    ``raw`` (the VAE's own latent, a ComfyUI LATENT) or ``taesd``. For FLUX.2 all three accept the latent packed
    (128 channels at /16) or unpacked (32 channels at /8); the channel count tells which.

    ``linear`` and ``neural`` give one pixel per taesd-domain latent pixel (FLUX.2: /8); ``tiny`` decodes to full
    image size (a video latent goes through the space's tiny video decoder's cheaper preview path, one frame per
    latent frame, where the space has one). ``size`` resizes the result: an int is the longer side, a pair is
    (height, width). ``factors`` replaces the default factors (the fitted ones shipped for the space, else the
    registry's; a :class:`Factors` or a factors file), ``previewer`` the shipped neural previewer (a file, used at
    its own scale).

    ``neural`` without ``previewer`` climbs the space's preview ladder (FLUX.2: /8 and /4 previewers): with ``size``
    it runs the rung whose output's longer side is nearest the longer side asked for (ties to the smaller, cheaper
    rung) and resizes the rest; without ``size`` the coarsest rung, one pixel per latent pixel as above. A rung
    whose file is not installed falls back to the next nearest one that is; only when none is does it fail
    (docs/previews.md). Device and dtype follow the latent (the neural and tiny models compute in its dtype, float16
    on a CPU in float32: :func:`latentbridge.devices.compute_dtype`); the caller's tensor is never modified. Pixels
    whose latent holds NaN or infinity come out magenta.
    """
    sp = spaces.get(space)
    if method not in METHODS:
        raise InputError(f"unknown preview method {method!r}: use one of {', '.join(METHODS)}")
    x, patch = _taesd_input(latent, sp, domain)
    natural = (x.shape[-2] * patch, x.shape[-1] * patch)  # one pixel per taesd-domain latent pixel; tiny: full size
    if method == "tiny":
        natural = (natural[0] * sp.taesd_downscale, natural[1] * sp.taesd_downscale)
    h, w = _target(natural, size) if size is not None else natural  # refused before anything is computed
    limits.check_pixels(limits.items(x), h, w, what="the preview",
                        fix="use a smaller size=" if size is not None else "preview fewer latents at a time")
    if method == "linear":
        f = factors if isinstance(factors, Factors) else load_factors(factors) if factors is not None else default_factors(sp)
        with torch.no_grad():
            out = f.preview(x, patch=patch, clamp=False)  # factors of other channels are refused here
        if f.space is not None and spaces.get(f.space) is not sp:  # same channels pass, and give wrong colours
            raise InputError(f"the factors ({f.source or 'given'}) were fitted for {f.space}, not {sp.id}: use {sp.id}'s "
                             "factors (or fit them with fit_factors)")
        if not bool(torch.isfinite(out.sum())):  # one reduction: any NaN or infinity makes the sum non-finite
            out = _mark(out, _bad_pixels(x, patch))
        out = out.clamp_(0, 1)
    else:
        bad = _bad_pixels(x, patch)
        if bad is not None:
            x = torch.nan_to_num(x, 0.0, 0.0, 0.0)
        batch = latent.shape[0] if latent.ndim == 5 else None
        x = x.to(devices.compute_dtype(latent.dtype, x.device))  # float16 on a CPU: float32
        if method == "neural":
            out = _neural(x, patch, sp, previewer, max(h, w) if size is not None else None)
        else:
            out = _tiny(x, patch, sp, batch)
        out = out.to(latent.dtype)
        if bad is not None:
            out = _mark(out, bad)
    out = resize(out, size) if size is not None else out
    return _unfold_frames(out, latent.shape[0]) if latent.ndim == 5 else out


def _unfold_frames(frames: torch.Tensor, batch: int) -> torch.Tensor:
    """(B*T, 3, h, w) frames, batch-major -> (B, 3, T, h, w)."""
    return frames.unflatten(0, (batch, -1)).transpose(1, 2)


def best_method(space: str | spaces.LatentSpace) -> str:
    """The cheapest good previewer available for ``space``: the neural one when a rung of its ladder has its file,
    else linear factors, else the tiny decoder."""
    sp = spaces.get(space)
    try:
        neural.pick(sp, 1)
        return "neural"
    except (FileNotFoundError, LatentBridgeError):
        try:
            default_factors(sp)
            return "linear"
        except LatentBridgeError:
            return "tiny"


def _taesd_input(latent: torch.Tensor, sp: spaces.LatentSpace, domain: str) -> tuple[torch.Tensor, int]:
    """The latent in the taesd domain as (B, C, H, W), or still packed with its patch size (linear maps take it
    packed); a 5-D latent (B, C, T, H, W) folds its frames into the batch, batch-major (B*T, C, H, W)."""
    spaces.check_domain(domain)
    if not spaces.check_tensor(latent).is_floating_point():
        raise InputError("preview needs a floating-point torch.Tensor latent")
    limits.check_not_empty(latent)
    x = latent
    if x.ndim == 5:
        x = x.transpose(1, 2).flatten(0, 1)
    elif x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise InputError(f"a {sp.id} latent is (B, C, H, W), or (B, C, T, H, W) for video; got shape "
                         f"{tuple(latent.shape)}")
    c = x.shape[1]
    if sp.packing is not None:
        if c == sp.packing.unpacked_channels:
            return x, 1
        if c == sp.channels:
            return x, sp.packing.patch
    elif c == sp.channels:
        return (sp.to_model(x) if domain == "raw" else x), 1
    want = f"{sp.channels}" + (f" (packed) or {sp.taesd_channels} (unpacked)" if sp.packing else "")
    raise InputError(f"a {sp.id} latent has {want} channels; this one has {c} (shape {tuple(latent.shape)}): "
                     "check space=")


def _bad_pixels(x: torch.Tensor, patch: int) -> torch.Tensor | None:
    """(B, H*patch, W*patch) mask of latent pixels holding NaN or infinity, or None when all are finite."""
    ok = torch.isfinite(x)
    if bool(ok.all()):
        return None
    if patch > 1:
        ok = spaces.unpack(ok.to(torch.uint8), patch).bool()
    return ~ok.all(1)


def _mark(rgb: torch.Tensor, bad: torch.Tensor | None) -> torch.Tensor:
    """Paint ``bad`` pixels (scaled to the image size) with the marker colour; clear any other non-finite value."""
    rgb = rgb.nan_to_num(0.0, 1.0, 0.0)
    if bad is None:
        return rgb
    if bad.shape[-2:] != rgb.shape[-2:]:
        bad = F.interpolate(bad[:, None].float(), size=rgb.shape[-2:], mode="nearest")[:, 0] > 0.5
    marker = torch.tensor(MARKER, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return torch.where(bad.unsqueeze(1), marker, rgb)


def _neural(x: torch.Tensor, patch: int, sp: spaces.LatentSpace, path: str | os.PathLike | None,
            want: int | None) -> torch.Tensor:
    """The file ``path`` at its own scale; else the installed rung nearest ``want`` (the longer side asked for),
    its output brought back to one pixel per latent pixel when nothing was asked for and only a finer rung is there."""
    natural = (x.shape[-2] * patch, x.shape[-1] * patch)
    scale = 1
    if path is None:
        rung, path = neural.pick(sp, max(natural), want)
        scale = rung.scale
        limits.check_pixels(x.shape[0], natural[0] * scale, natural[1] * scale, what=f"the {rung.name} preview",
                            fix="use a smaller size=")
    model = neural.load(sp, path, scale=scale, device=x.device, dtype=x.dtype)
    packed = patch > 1 and patch == model.config.patch  # the net packs its input anyway: hand it over as it is
    if patch > 1 and not packed:
        x = spaces.unpack(x, patch)
    with torch.no_grad():
        out = model(x, packed=packed).clamp_(0, 1)
    return resize(out, natural) if want is None and scale != 1 else out


def _tiny(x: torch.Tensor, patch: int, sp: spaces.LatentSpace, batch: int | None) -> torch.Tensor:
    """Decode (N, C, H, W) with the space's tiny decoder. ``batch`` is set when ``x`` holds the frames of ``batch``
    clips (batch-major): the space's tiny video decoder (TAEHV family), where it has one, then sees each clip whole
    through its cheap preview path (one frame per latent frame, its nearest upsampling off), still folded
    batch-major; otherwise the image decoder decodes frame by frame."""
    from .. import tiny

    z = spaces.unpack(x, patch) if patch > 1 else x
    video = next((m.name for m in sp.tiny_models if m.video), None) if batch is not None else None
    if video is not None:
        model = tiny.load(video, device=x.device, dtype=x.dtype, space=sp)
        with torch.no_grad():
            return model.preview(z.unflatten(0, (batch, -1)).transpose(1, 2)).transpose(1, 2).flatten(0, 1)
    if sp.tiny is None:
        raise InputError(f"{sp.id} has no tiny autoencoder: use method='linear' or method='neural'")
    model = tiny.load(f"{sp.tiny}_decoder", device=x.device, dtype=x.dtype)
    with torch.no_grad():
        return model.decode(z).clamp(0, 1)


def _target(hw: tuple[int, int], size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a picture of ``hw`` resized to ``size``: an int is the longer side, a pair the size."""
    h, w = hw
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        if not (math.isfinite(size) and size >= 1 and size == int(size)):
            raise InputError(f"size={size} is not a positive whole number of pixels")
        scale = int(size) / max(h, w)
        return max(1, round(h * scale)), max(1, round(w * scale))
    try:
        target = tuple(int(v) for v in size) if not isinstance(size, str) else ()
    except (TypeError, ValueError, OverflowError):
        target = ()
    if len(target) != 2 or min(target) < 1:
        raise InputError(f"size={size!r} is not a longer side or a (height, width) pair of positive whole numbers")
    return target  # type: ignore[return-value]


def resize(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize (B, 3, H, W): an int is the longer side (aspect kept), a pair is (height, width); smooth both ways."""
    h, w = images.shape[-2:]
    target = _target((h, w), size)
    limits.check_pixels(limits.items(images), *target, what="the resized pictures", fix="use a smaller size=")
    if target == (h, w):
        return images
    mode = "bilinear" if target[0] < h or target[1] < w else "bicubic"
    out = F.interpolate(images.float(), size=target, mode=mode, antialias=mode == "bilinear", align_corners=False)
    return out.clamp_(0, 1).to(images.dtype)
