"""The TAEHV-family video networks as literal ``nn.Sequential`` tables, key-compatible with the published files.

Frames travel through the tables as a batch of images, ``(B*T, C, H, W)`` batch-major. Three kinds of layer act
across time (docs/taehv.md):

* :class:`MemBlock` (and its :class:`SuperMemBlock` / :class:`WideMemBlock` variants) sees its input together with
  ``past``, the same layer's input one frame earlier (zeros before the first frame): the networks are causal;
* :class:`TPool` stacks ``stride`` consecutive frames on channels and mixes them with a 1x1 conv (encoder);
* :class:`TGrow` mixes channels with a 1x1 conv into ``stride`` consecutive frames (decoder).

A :class:`VideoLayout` says which table a file holds (decoder kind, latent channels, pixel patch, time strides);
:func:`identify` reads it from key names and shapes, never from file names. :mod:`.stream` runs the tables.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from . import arch
from .arch import Clamp, conv

DECODERS = ("base", "super", "wide", "taesdv")
_WIDTHS = {"base": (256, 128, 64, 64), "wide": (1024, 512, 256, 64), "super": (512, 256, 128, 64)}
_ENCODER_WIDTH = 64


class MemBlock(nn.Module):
    """``relu(conv-relu-conv-relu-conv([x, past]) + skip(x))``: a residual block that also sees the previous frame."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv(2 * n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class SuperMemBlock(nn.Module):
    """The ``_super`` decoders' block: 7x7 depthwise conv over ``[x, past]``, 1x1 expand-relu-project, plus ``x``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(2 * width, 2 * width, 7, padding=3, groups=2 * width, bias=False),
            nn.Conv2d(2 * width, 4 * width, 1), nn.ReLU(),
            nn.Conv2d(4 * width, width, 1, bias=False),
        )

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x, past], 1)) + x


class WideMemBlock(nn.Module):
    """The ``_wide`` decoder's block: 1x1 and grouped 3x3 convs (64 channels per group) over ``[x, past]``."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        groups = max(1, n_out // 64)
        self.conv = nn.Sequential(
            nn.Conv2d(2 * n_in, n_out, 1), nn.ReLU(), nn.Conv2d(n_out, n_out, 3, padding=1, groups=groups), nn.ReLU(),
            nn.Conv2d(n_out, n_out, 1), nn.ReLU(), nn.Conv2d(n_out, n_out, 3, padding=1, groups=groups),
        )
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(torch.cat([x, past], 1)) + self.skip(x))


MEMORY_BLOCKS = (MemBlock, SuperMemBlock, WideMemBlock)


class TPool(nn.Module):
    """``stride`` consecutive frames -> one: frames stacked on channels, then a 1x1 conv without bias."""

    def __init__(self, width: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(width * stride, width, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, c, h, w = x.shape
        return self.conv(x.reshape(-1, self.stride * c, h, w))


class TGrow(nn.Module):
    """One frame -> ``stride`` consecutive frames: a 1x1 conv to ``stride`` x the channels, split in time order."""

    def __init__(self, width: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(width, width * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, c, h, w = x.shape
        return self.conv(x).reshape(-1, c, h, w)


@dataclass(frozen=True)
class VideoLayout:
    """Which table a file holds: decoder kind, latent channels, pixel patch and per-stage time strides.

    ``encoder_strides`` are the TPool strides (empty for TAESDV, whose encoder works frame by frame);
    ``decoder_strides`` the TGrow strides in use (empty for TAESDV, which keeps one frame per latent).
    """

    decoder: str
    latent_channels: int
    patch: int
    encoder_strides: tuple[int, ...]
    decoder_strides: tuple[int, ...]

    @property
    def time_downscale(self) -> int:
        return math.prod(self.encoder_strides)

    @property
    def time_upscale(self) -> int:
        return math.prod(self.decoder_strides)

    @property
    def downscale(self) -> int:
        """Image pixels per latent pixel: three stride-2 stages times the pixel patch."""
        return 8 * self.patch


def encoder(layout: VideoLayout) -> nn.Sequential:
    """RGB frames (pixel-unshuffled by ``patch``) -> latent frames."""
    if layout.decoder == "taesdv":
        return arch.encoder(layout.latent_channels)  # TAESD's per-frame encoder, same keys
    w = _ENCODER_WIDTH
    layers: list[nn.Module] = [conv(3 * layout.patch ** 2, w), nn.ReLU()]
    for stride in layout.encoder_strides:
        layers += [TPool(w, stride), conv(w, w, stride=2, bias=False), *(MemBlock(w, w) for _ in range(3))]
    return nn.Sequential(*layers, conv(w, layout.latent_channels))


def decoder(layout: VideoLayout) -> nn.Sequential:
    """Latent frames -> RGB frames (to be pixel-shuffled by ``patch``)."""
    kind, out = layout.decoder, 3 * layout.patch ** 2
    if kind == "taesdv":
        stages = [layer for _ in range(3) for layer in
                  (MemBlock(64, 64), MemBlock(64, 64), MemBlock(64, 64), nn.Upsample(scale_factor=2), conv(64, 64, bias=False))]
        return nn.Sequential(Clamp(), conv(layout.latent_channels, 64), nn.ReLU(), *stages, MemBlock(64, 64), conv(64, out))
    widths = _WIDTHS[kind]
    if kind == "super":
        layers: list[nn.Module] = [nn.Conv2d(layout.latent_channels, widths[0], 1, bias=False)]
        for (n, m), stride in zip(itertools.pairwise(widths), layout.decoder_strides, strict=True):
            layers += [*(SuperMemBlock(n) for _ in range(3)), conv(n, 4 * m), nn.ReLU(), nn.PixelShuffle(2),
                       TGrow(m, stride)]
        return nn.Sequential(*layers, conv(widths[-1], out))
    block = WideMemBlock if kind == "wide" else MemBlock
    layers = [Clamp(), conv(layout.latent_channels, widths[0]), nn.ReLU()]
    for (n, m), stride in zip(itertools.pairwise(widths), layout.decoder_strides, strict=True):
        layers += [*(block(n, n) for _ in range(3)), nn.Upsample(scale_factor=2), TGrow(n, stride),
                   conv(n, m, bias=False)]
    return nn.Sequential(*layers, nn.ReLU(), conv(widths[-1], out))


def split(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The ``encoder.*`` and ``decoder.*`` tensors of a state dict, prefixes (and DDP/compile wrappers) removed."""
    halves: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] = ({}, {})
    for key, value in tensors.items():
        key = re.sub(r"^(module\.|_orig_mod\.)+", "", key)
        for half, prefix in zip(halves, ("encoder.", "decoder."), strict=True):
            if key.startswith(prefix):
                half[key[len(prefix):]] = value
    return halves


def decoder_kind(state: Mapping[str, torch.Tensor]) -> str | None:
    """Which video decoder a ``decoder.*`` state (prefix removed) holds, from its memory blocks; None if none."""
    first = state.get("0.weight")
    if first is not None and first.ndim == 4 and first.shape[-1] == 1 and "1.conv.0.weight" in state:
        return "super"
    block = state.get("3.conv.0.weight")
    if block is None or block.ndim != 4:
        return None
    if block.shape[-1] == 1 and "3.conv.6.weight" in state:
        return "wide"
    if block.shape[-1] == 3 and block.shape[1] == 2 * block.shape[0]:  # a 3x3 conv over [x, past]
        return "base" if "7.conv.weight" in state else "taesdv"
    return None


def is_video(tensors: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict holds a TAEHV-family (or TAESDV) network: time layers or memory blocks in its keys."""
    enc, dec = split(tensors)
    return decoder_kind(dec) is not None or _tpool_strides(enc) is not None


def _tpool_strides(enc: Mapping[str, torch.Tensor]) -> tuple[int, ...] | None:
    """TPool strides of a TAEHV encoder (three stages of five layers from index 2), None if it has no TPool."""
    keys = [f"{2 + 5 * i}.conv.weight" for i in range(3)]
    if not all(k in enc and enc[k].ndim == 4 for k in keys):
        return None
    return tuple(int(enc[k].shape[1]) // int(enc[k].shape[0]) for k in keys)


def identify(enc: Mapping[str, torch.Tensor], dec: Mapping[str, torch.Tensor]) -> VideoLayout:
    """The layout of a video file's halves (either may be empty); :class:`KeyError` names a key the guess needs.

    The decoder's time strides follow the encoder's total (the published files may store a doubling TGrow where
    upstream's default leaves the first stage at one frame; upstream then keeps its last output channels). A
    decoder alone gets upstream's default: x8 for the patch-4 (LTX) layout, x4 otherwise.
    """
    kind = decoder_kind(dec) if dec else ("base" if _tpool_strides(enc) else "taesdv")
    if kind == "taesdv":
        channels = int(dec["1.weight"].shape[1]) if dec else int(_last_conv(enc).shape[0])
        return VideoLayout("taesdv", channels, 1, (), ())
    enc_strides = _tpool_strides(enc) if enc else None
    if enc and enc_strides is None:
        raise KeyError("encoder.2.conv.weight")
    if dec:
        head = dec["0.weight" if kind == "super" else "1.weight"]
        channels, patch = int(head.shape[1]), _patch(_last_conv(dec).shape[0])
        found = tuple(int(dec[k].shape[0]) // int(dec[k].shape[1]) for k in _tgrow_keys(kind))
    else:
        channels, patch = int(_last_conv(enc).shape[0]), _patch(enc["0.weight"].shape[1])
        found = (2, 2, 2)
    enc_strides = enc_strides or ((2, 2, 2) if patch == 4 else (2, 2, 1))
    strides = list(found)
    for i in range(len(strides)):  # leading stages fall back to one frame until the totals agree
        if math.prod(strides) > math.prod(enc_strides) and strides[i] > 1:
            strides[i] = 1
    return VideoLayout(kind, channels, patch, enc_strides, tuple(strides))


def _tgrow_keys(kind: str) -> list[str]:
    first, step = (7, 7) if kind == "super" else (7, 6)
    return [f"{first + step * i}.conv.weight" for i in range(3)]


def _last_conv(state: Mapping[str, torch.Tensor]) -> torch.Tensor:
    index = max(int(k.split(".")[0]) for k in state if re.fullmatch(r"\d+\.weight", k))
    return state[f"{index}.weight"]


def _patch(channels: int) -> int:
    return math.isqrt(int(channels) // 3)


def fit_state(layout: VideoLayout, role: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` ready for strict loading into the table: TGrow weights with more frames than the layout uses keep
    their last output channels (the last frames), as upstream does. :class:`ValueError` lists what does not fit.
    """
    with torch.device("meta"):
        expected = (encoder if role == "encoder" else decoder)(layout).state_dict()
    out = dict(state)
    for key, want in expected.items():
        have = out.get(key)
        if have is not None and have.shape[1:] == want.shape[1:] and have.shape[0] > want.shape[0] \
                and have.shape[0] % want.shape[0] == 0 and have.shape[-1] == 1 and key.endswith(".conv.weight"):
            out[key] = have[-want.shape[0]:]
    missing = sorted(set(expected) - set(out))
    unexpected = sorted(set(out) - set(expected))
    wrong = sorted(k for k in set(expected) & set(out) if tuple(expected[k].shape) != tuple(out[k].shape))
    if missing or unexpected or wrong:
        parts = [f"missing {_few(missing)}" if missing else "", f"unexpected {_few(unexpected)}" if unexpected else "",
                 "wrong shape " + ", ".join(f"{k} {tuple(out[k].shape)} (expected {tuple(expected[k].shape)})"
                                            for k in wrong[:4]) if wrong else ""]
        raise ValueError("; ".join(p for p in parts if p))
    return out


def _few(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")
