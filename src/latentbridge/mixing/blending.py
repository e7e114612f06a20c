"""Blending functions: mix the sampler's latent ``x`` with the noised copy, ``weight`` being the copy's share.

* ``lerp`` (the Iterative Mixer's "addition"): ``(1 - w) x + w z'``.
* ``norm_preserving``: the lerp, rescaled per batch item to the lerp of the two norms. Two latents at the same
  noise level with partly independent noise lose norm when averaged; this keeps the magnitude the sampler expects.
* ``slerp``: per batch item, the direction moves along the great circle between the two and the norm is
  interpolated linearly (fewer artefacts according to the Iterative Mixer's author, whose version applies the
  slerp coefficients to the unnormalised vectors). Nearly parallel (or zero) inputs fall back to the lerp, where
  slerp's 1/sin(theta) blows up.
"""

from __future__ import annotations

import torch

from ..errors import InputError

BLENDS = ("lerp", "norm_preserving", "slerp")
_PARALLEL = 1e-4  # sin(theta) below which slerp is numerically a lerp


def _norms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).float().norm(dim=1).view(-1, *(1,) * (t.ndim - 1))


def _norm_preserving(x: torch.Tensor, noised: torch.Tensor, w: float) -> torch.Tensor:
    mixed = torch.lerp(x, noised, w)
    target = torch.lerp(_norms(x), _norms(noised), w)
    return mixed * (target / _norms(mixed).clamp_min(1e-12)).to(mixed.dtype)


def _slerp(x: torch.Tensor, noised: torch.Tensor, w: float) -> torch.Tensor:
    nx, nz = _norms(x), _norms(noised)
    dot = (x.flatten(1).float() * noised.flatten(1).float()).sum(1).view_as(nx) / (nx * nz).clamp_min(1e-24)
    theta = torch.arccos(dot.clamp(-1.0, 1.0))
    sin = torch.sin(theta)
    parallel = (sin < _PARALLEL) | (nx * nz < 1e-24)
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    norm = torch.lerp(nx, nz, w)
    a = torch.sin((1 - w) * theta) / safe * norm / nx.clamp_min(1e-12)
    b = torch.sin(w * theta) / safe * norm / nz.clamp_min(1e-12)
    a = torch.where(parallel, torch.full_like(sin, 1 - w), a)
    b = torch.where(parallel, torch.full_like(sin, w), b)
    return x * a.to(x.dtype) + noised * b.to(x.dtype)


_BLENDS = {"lerp": lambda x, z, w: torch.lerp(x, z, w), "norm_preserving": _norm_preserving, "slerp": _slerp}


def check_blend(method: str) -> str:
    if method not in _BLENDS:
        raise InputError(f"unknown blending function {method!r}: use one of {', '.join(BLENDS)}")
    return method


def blend(x: torch.Tensor, noised: torch.Tensor, weight: float, method: str = "lerp") -> torch.Tensor:
    """Mix ``x`` (the sampler's latent) with ``noised`` (the copy at the same sigma); ``weight`` = the copy's share."""
    check_blend(method)
    if x.shape != noised.shape:
        raise InputError(f"cannot blend a latent of shape {tuple(x.shape)} with a noised copy of shape "
                         f"{tuple(noised.shape)}: unsample the same (upscaled) latent the sampler runs on")
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"blending weight must lie in [0, 1]; got {weight}")
    return _BLENDS[method](x, noised.to(x.dtype), float(weight))
