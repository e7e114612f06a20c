"""The TAESD-family networks as literal ``nn.Sequential`` tables, key-compatible with the published files.

Three variants share the building blocks (madebyollin/taesd ``taesd.py``):

* ``standard``: /8, 4 or 16 latent channels (taesd, taesdxl, taesd3, taef1);
* ``flux_2``: /8, 32 channels, with a GroupNorm side branch in the latent-resolution blocks (taef2);
* ``f32``: /32, 32 channels (taesana).

The tables fix the state-dict keys (``<index>.conv.<j>.weight``); :mod:`.run` holds the fast forward pass.
"""

from __future__ import annotations

import torch
from torch import nn

VARIANTS = ("standard", "flux_2", "f32")
DOWNSCALE = {"standard": 8, "flux_2": 8, "f32": 32}


def conv(n_in: int, n_out: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """3x3 convolution with zero padding 1."""
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class Clamp(nn.Module):
    """Soft clamp of decoder input latents to (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual block: relu(conv-relu-conv-relu-conv(x) + skip(x)), with the flux_2 GroupNorm branch optional."""

    def __init__(self, n_in: int, n_out: int, *, groupnorm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()
        self.pool: nn.Sequential | None = None
        if groupnorm:
            # FLUX.2 needed a globally normalised side branch for accurate distillation.
            width = 4 * n_in
            self.pool = nn.Sequential(nn.Conv2d(n_in, width, 1, bias=False), nn.GroupNorm(4, width), nn.ReLU(),
                                      nn.Conv2d(width, n_in, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def _blocks(n: int, width: int = 64, *, groupnorm: bool = False) -> list[nn.Module]:
    return [Block(width, width, groupnorm=groupnorm) for _ in range(n)]


def _down() -> list[nn.Module]:
    return [conv(64, 64, stride=2, bias=False)]


def _up(n_in: int, n_out: int) -> list[nn.Module]:
    return [nn.Upsample(scale_factor=2), conv(n_in, n_out, bias=False)]


def encoder(latent_channels: int, variant: str = "standard") -> nn.Sequential:
    """RGB in [0, 1] -> latent; /8 (``standard``, ``flux_2``) or /32 (``f32``)."""
    _check(variant)
    if variant == "f32":
        return nn.Sequential(
            conv(3, 32, stride=2), nn.ReLU(), conv(32, 64, stride=2), nn.ReLU(), *_blocks(1),
            *_down(), *_blocks(3), *_down(), *_blocks(3), *_down(), *_blocks(3),
            conv(64, latent_channels),
        )
    gn = variant == "flux_2"
    return nn.Sequential(
        conv(3, 64), *_blocks(1),
        *_down(), *_blocks(3), *_down(), *_blocks(3), *_down(), *_blocks(3, groupnorm=gn),
        conv(64, latent_channels),
    )


def decoder(latent_channels: int, variant: str = "standard") -> nn.Sequential:
    """Latent -> RGB in about [0, 1]; x8 (``standard``, ``flux_2``) or x32 (``f32``)."""
    _check(variant)
    if variant == "f32":
        return nn.Sequential(
            Clamp(), conv(latent_channels, 256), nn.ReLU(),
            *_blocks(3, 256), *_up(256, 128), *_blocks(3, 128), *_up(128, 64), *_blocks(3),
            *_up(64, 64), *_blocks(3), *_up(64, 64), *_blocks(3), *_up(64, 64), *_blocks(1),
            conv(64, 3),
        )
    gn = variant == "flux_2"
    return nn.Sequential(
        Clamp(), conv(latent_channels, 64), nn.ReLU(),
        *_blocks(3, groupnorm=gn), *_up(64, 64), *_blocks(3), *_up(64, 64), *_blocks(3), *_up(64, 64), *_blocks(1),
        conv(64, 3),
    )


def _check(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown TAESD variant {variant!r}: use one of {', '.join(VARIANTS)}")
