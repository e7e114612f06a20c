"""``convert``: a latent of one space to another through the planned interposers, in whatever domain it came."""

from __future__ import annotations

import os

import torch

from .. import devices, limits, spaces
from ..errors import InputError
from .models import ModelEntry, inference_net, locate
from .routing import Route, plan


def _as_batch(latent: torch.Tensor, space: spaces.LatentSpace, domain: str) -> tuple[torch.Tensor, tuple[int, ...], str]:
    """(B, C, H, W) view of ``latent`` with any leading dims folded into B; a packed space's unpacked
    raw/model latent (FLUX.2 at 32 channels) is packed first."""
    if not spaces.check_tensor(latent).is_floating_point():
        raise InputError(f"convert takes a floating-point torch.Tensor latent, got {latent.dtype}: convert with .float()")
    limits.check_not_empty(latent)
    spatial = space.ndim - 2
    if latent.ndim < spatial + 1:
        raise InputError(f"a {space.id} latent needs at least {spatial + 1} dims (C, H, W); got shape {tuple(latent.shape)}")
    lead = tuple(latent.shape[: latent.ndim - spatial - 1])
    x = latent.reshape(-1, *latent.shape[latent.ndim - spatial - 1:])
    if space.packing and domain != "taesd" and x.shape[1] == space.packing.unpacked_channels:
        x = spaces.pack(x, space.packing.patch)
    if x.shape[1] != space.channels_in(domain):
        unpacked = f" (or {space.taesd_channels} unpacked)" if space.packing and domain != "taesd" else ""
        raise InputError(f"the latent has {x.shape[1]} channels but a {space.id} latent in the {domain} domain has "
                         f"{space.channels_in(domain)}{unpacked}: check the source space (src=) and domain=")
    if bad := spaces.count_nonfinite(x):
        raise InputError(f"the latent holds {bad} NaN or infinite values: it is corrupt or came from a diverged "
                         "sampler; nothing was converted")
    return x, lead, domain


def run_route(x: torch.Tensor, route: Route, domain: str, *, models_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """Apply ``route`` to a (B, C, H, W) latent of ``route.src`` in ``domain``; returns ``route.dst`` in ``domain``."""
    space, dom = spaces.get(route.src), domain
    for step in route.steps:
        x = spaces.convert_domain(x, space, dom, step.domain_in)
        x = _net(step, models_dir, x)(x.contiguous(memory_format=torch.channels_last))  # faster convs
        space, dom = spaces.get(step.dst), step.domain_out
    return spaces.convert_domain(x, space, dom, domain).contiguous()


def _net(step: ModelEntry, models_dir, like: torch.Tensor) -> torch.nn.Module:
    return inference_net(locate(step, models_dir), step, like.device, like.dtype)


@torch.no_grad()
def convert(latent: torch.Tensor, src: str | spaces.LatentSpace, dst: str | spaces.LatentSpace, *,
            domain: spaces.Domain = spaces.DEFAULT_DOMAIN, models_dir: str | os.PathLike | None = None,
            device: str | torch.device | None = None) -> torch.Tensor:
    """Convert a latent of space ``src`` into space ``dst``; takes and returns the ``domain`` given (raw, model or
    taesd; the model domain by default, as :func:`~latentbridge.preview.preview` and
    :func:`~latentbridge.upscale.upscale`: :data:`latentbridge.spaces.DEFAULT_DOMAIN`).

    Each model gets the domain it was trained on (v4.0: raw) whatever the caller holds. Leading dims (batch and
    more) pass through; FLUX.2 may come packed (128 ch) or unpacked (32 ch) in the raw/model domains. The
    networks run on ``device`` (default: the latent's) in the latent's dtype (float16 on a CPU: float32,
    :func:`latentbridge.devices.compute_dtype`); the result has the latent's device and dtype. With
    ``models_dir`` given and offline mode on, only the models found there are used.
    """
    a, b = spaces.get(src), spaces.get(dst)
    spaces.check_domain(domain)
    x, lead, domain = _as_batch(latent, a, domain)
    route = plan(a, b, models_dir=models_dir)
    run_on = devices.resolve(device, default=latent.device)
    x = x.to(run_on, devices.compute_dtype(latent.dtype, run_on))
    if route.steps and a.ndim != 4:
        raise InputError(f"interposers work on 4-D image latents; {a.id} latents are {a.ndim}-D")
    y = run_route(x, route, domain, models_dir=models_dir)
    if y.numel() == 0:  # a route that shrinks the grid (FLUX.2 /16 -> Sana /32) left less than one latent pixel
        raise InputError(f"a {'x'.join(map(str, latent.shape[-2:]))} {a.id} latent is smaller than one {b.id} latent "
                         f"pixel ({b.downscale_in(domain)} image pixels): convert a larger latent")
    y = y.to(latent.device, latent.dtype)
    return y.reshape(*lead, *y.shape[1:])
