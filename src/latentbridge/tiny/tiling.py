"""Tiled decoding and encoding with bounded memory that match an untiled pass.

The decoder is split at its first upsample. The head (soft clamp, first conv, latent-resolution blocks) runs on
the whole latent: it is cheap at latent resolution, and it is where the flux_2 GroupNorm branches live, so their
statistics are taken over the whole latent (the 4x-wide branch itself is computed in row chunks, two passes).
The tail, whose receptive field is bounded, runs tile by tile with a margin that covers that receptive field; the
margins are cropped away, so tiles need no blending and show no seams.

The encoder is the mirror image: the layers up to its last downsampling conv (full-resolution work, bounded
receptive field, no GroupNorm) run tile by tile on crops of the image that start on whole latent cells, so every
stride lines up with the untiled pass; the rest, at latent resolution (the flux_2 GroupNorm blocks), runs whole.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import arch, run


def split_index(decoder: nn.Sequential) -> int:
    """Index of the decoder's first upsample: layers before it run at latent resolution."""
    return next(i for i, layer in enumerate(decoder) if isinstance(layer, nn.Upsample))


def receptive_margin(decoder: nn.Sequential, start: int) -> int:
    """Latent pixels of context the layers from ``start`` need on each side for exact outputs."""
    scale, radius = 1, 0.0
    for layer in list(decoder)[start:]:
        if isinstance(layer, nn.Upsample):
            scale *= 2
        elif isinstance(layer, nn.Conv2d):
            radius += (layer.kernel_size[0] // 2) / scale
        elif isinstance(layer, arch.Block):
            radius += sum(c.kernel_size[0] // 2 for c in layer.conv if isinstance(c, nn.Conv2d)) / scale
    return math.ceil(radius)


def head(decoder: nn.Sequential, z: torch.Tensor, *, rows: int = 64) -> torch.Tensor:
    """The latent-resolution part of the decoder on the whole latent (GroupNorm branches in row chunks)."""
    stop = split_index(decoder)
    x = z
    for i, layer in enumerate(list(decoder)[:stop]):
        if isinstance(layer, arch.Block) and layer.pool is not None:
            x = run.block(layer, x, pool=groupnorm_branch_chunked(layer.pool, x, rows=rows))
        else:
            x = run.forward(decoder, x, start=i, stop=i + 1)
    return x


def groupnorm_branch_chunked(pool: nn.Sequential, x: torch.Tensor, *, rows: int = 64) -> torch.Tensor:
    """:func:`run.groupnorm_branch` with the 4x-wide tensor made ``rows`` latent rows at a time.

    Pass 1 accumulates each group's sum and sum of squares (float64) over the whole latent; pass 2 normalises.
    """
    conv_in, gn, conv_out = pool[0], pool[1], pool[3]
    n, groups = x.shape[0], gn.num_groups
    acc = torch.float32 if x.device.type == "mps" else torch.float64  # MPS has no float64
    total = torch.zeros(n, groups, dtype=acc, device=x.device)
    squares = torch.zeros_like(total)
    for chunk in x.split(rows, dim=2):
        h = F.conv2d(chunk, conv_in.weight).reshape(n, groups, -1).to(acc)
        total += h.sum(-1)
        squares += (h * h).sum(-1)
    count = conv_in.weight.shape[0] // groups * x.shape[2] * x.shape[3]
    mean = total / count
    inv_std = ((squares / count - mean * mean).clamp_min(0) + gn.eps).rsqrt()
    width = conv_in.weight.shape[0]
    per_channel = width // groups
    scale = inv_std.repeat_interleave(per_channel, 1) * gn.weight.to(acc)  # (n, width)
    shift = gn.bias.to(acc) - mean.repeat_interleave(per_channel, 1) * scale
    scale, shift = scale.to(x.dtype), shift.to(x.dtype)
    out = []
    for chunk in x.split(rows, dim=2):
        h = F.conv2d(chunk, conv_in.weight)
        h = torch.addcmul(shift[:, :, None, None], h, scale[:, :, None, None]).relu_()
        out.append(F.conv2d(h, conv_out.weight))
    return torch.cat(out, dim=2)


def decode_tiled(decoder: nn.Sequential, z: torch.Tensor, *, tile: int = 32, margin: int | None = None,
                 progress: bool = False) -> torch.Tensor:
    """taesd-domain latent -> image like ``run.forward(decoder, z)``, holding one tile of activations at a time.

    ``tile`` is the tile side in latent pixels; ``margin`` the context around each tile (default: the tail's
    receptive field, which makes tiles match an untiled decode up to float rounding).
    """
    if tile < 1:
        raise ValueError("tile must be at least 1 latent pixel")
    start = split_index(decoder)
    margin = receptive_margin(decoder, start) if margin is None else margin
    feats = head(decoder, z)
    n, _, h, w = feats.shape
    scale = round(run_scale(decoder, start))
    out = None
    cells = [(y, x) for y in range(0, h, tile) for x in range(0, w, tile)]
    for y, x in tqdm(cells, desc="tiles", disable=not progress, leave=False):
        y0, x0 = max(y - margin, 0), max(x - margin, 0)
        y1, x1 = min(y + tile + margin, h), min(x + tile + margin, w)
        piece = run.forward(decoder, feats[:, :, y0:y1, x0:x1], start=start)
        if out is None:
            out = piece.new_empty(n, piece.shape[1], h * scale, w * scale)
        th, tw = min(tile, h - y), min(tile, w - x)
        oy, ox = (y - y0) * scale, (x - x0) * scale
        out[:, :, y * scale:(y + th) * scale, x * scale:(x + tw) * scale] = \
            piece[:, :, oy:oy + th * scale, ox:ox + tw * scale]
    assert out is not None
    return out


def decode_window(decoder: nn.Sequential, z: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """The picture of the ``size`` x ``size`` latent window at (``top``, ``left``) as a whole decode sees it, up to
    the tail's context at the window's edges: the head runs on the whole latent (so the flux_2 GroupNorm statistics
    are the whole latent's), the tail on the window. The plain modules run, so gradients reach ``z``: this is the
    image loss of the training recipes (a window decoded alone moves FLUX.2's GroupNorm statistics: 29 dB from the
    whole decode's picture on photos, where this stays within 42-47 dB away from a 2-3 pixel edge).
    """
    start = split_index(decoder)
    feats = decoder[:start](z)
    return decoder[start:](feats[..., top:top + size, left:left + size])


def run_scale(decoder: nn.Sequential, start: int = 0) -> int:
    """Total upscale of the layers from ``start`` (8 or 32)."""
    return 2 ** sum(isinstance(layer, nn.Upsample) for layer in list(decoder)[start:])


def encode_split(encoder: nn.Sequential) -> int:
    """Index after the encoder's last downsampling conv: the layers from there on run at latent resolution."""
    return 1 + max(i for i, layer in enumerate(encoder) if isinstance(layer, nn.Conv2d) and layer.stride[0] > 1)


def encoder_margin(encoder: nn.Sequential, stop: int) -> int:
    """Latent pixels of context the layers before ``stop`` need on each side of a tile for exact outputs."""
    scale, radius = 1, 0
    for layer in list(encoder)[:stop]:
        if isinstance(layer, nn.Conv2d):
            radius += (layer.kernel_size[0] // 2) * scale
            scale *= layer.stride[0]
        elif isinstance(layer, arch.Block):
            radius += sum(c.kernel_size[0] // 2 for c in layer.conv if isinstance(c, nn.Conv2d)) * scale
    return math.ceil(radius / scale)


def encode_tiled(encoder: nn.Sequential, images: torch.Tensor, *, tile: int = 128, margin: int | None = None,
                 progress: bool = False) -> torch.Tensor:
    """Images (sides multiples of the downscale) -> taesd-domain latent like ``run.forward(encoder, images)``,
    holding the full-resolution activations of one tile at a time.

    ``tile`` is the tile side in latent pixels; ``margin`` the context around each tile (default: the receptive
    field of the full-resolution layers, which makes tiles match an untiled encode up to float rounding).
    """
    if tile < 1:
        raise ValueError("tile must be at least 1 latent pixel")
    stop = encode_split(encoder)
    down = math.prod(layer.stride[0] for layer in list(encoder)[:stop] if isinstance(layer, nn.Conv2d))
    margin = encoder_margin(encoder, stop) if margin is None else margin
    n, h, w = images.shape[0], images.shape[-2] // down, images.shape[-1] // down
    feats = None
    cells = [(y, x) for y in range(0, h, tile) for x in range(0, w, tile)]
    for y, x in tqdm(cells, desc="tiles", disable=not progress, leave=False):
        y0, x0 = max(y - margin, 0), max(x - margin, 0)
        y1, x1 = min(y + tile + margin, h), min(x + tile + margin, w)
        piece = run.forward(encoder, images[:, :, y0 * down:y1 * down, x0 * down:x1 * down], stop=stop)
        if feats is None:
            feats = piece.new_empty(n, piece.shape[1], h, w)
        th, tw = min(tile, h - y), min(tile, w - x)
        feats[:, :, y:y + th, x:x + tw] = piece[:, :, y - y0:y - y0 + th, x - x0:x - x0 + tw]
    assert feats is not None
    return run.forward(encoder, feats, start=stop)
