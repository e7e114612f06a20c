"""latentbridge's own interposer network: any channel counts, any integer spatial ratio, no BatchNorm.

Data flow: normalise the input per channel -> (``in_blocks`` > 0) residual blocks at the input resolution ->
space-to-depth by ``down`` -> 1x1 conv to ``width`` -> residual
3x3 blocks at the coarse working resolution -> (``up`` > 1) conv to ``hi_width * up**2``, depth-to-space and
residual blocks at the output resolution -> 3x3 conv to ``ch_out`` -> add a linear map of the (space-to-depth)
input -> undo the output normalisation. Almost all the work happens at the coarser of the two resolutions,
which keeps it two orders of magnitude cheaper than decoding and re-encoding. Without input blocks, a down-scaling
net sees each patch of fine pixels only through the stem's linear map; an input block lets them act nonlinearly
(local texture energy, edges) before they are pooled, at the cost of convolutions at the fine resolution.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import ResBlock, patch_conv
from ..errors import InputError


@dataclass(frozen=True)
class BridgeConfig:
    """Shape of a :class:`BridgeNet`. Output size = input size * up / down."""

    # block counts a fine-tune may raise over a trained file's: added blocks start as the identity
    GROWABLE: ClassVar[tuple[str, ...]] = ("in_blocks", "blocks", "hi_blocks")

    ch_in: int
    ch_out: int
    down: int = 1  # input pixels per working pixel, per side (space-to-depth)
    up: int = 1  # output pixels per working pixel, per side (depth-to-space)
    width: int = 128  # channels at the working resolution
    blocks: int = 6  # residual blocks at the working resolution
    hi_width: int = 32  # channels at the output resolution when up > 1
    hi_blocks: int = 1  # residual blocks at the output resolution when up > 1
    in_blocks: int = 0  # residual blocks (ch_in wide) at the input resolution, before space-to-depth

    def __post_init__(self) -> None:
        if min(self.ch_in, self.ch_out, self.down, self.up, self.width) < 1 or min(self.blocks, self.hi_blocks, self.in_blocks) < 0:
            raise InputError(f"invalid interposer shape {self}: channels, down, up and width must be >= 1, block counts >= 0")

    @classmethod
    def for_ratio(cls, ch_in: int, ch_out: int, ratio: Fraction | float, **kw) -> BridgeConfig:
        """A config whose output is ``ratio`` times the input size (e.g. 1/4 for /8 -> /32)."""
        r = Fraction(ratio).limit_denominator(64)
        return cls(ch_in, ch_out, down=r.denominator, up=r.numerator, **kw)

    def flops_per_pixel(self) -> float:
        """Floating-point operations per input latent pixel (2 per multiply-add, convolutions only)."""
        packed = self.ch_in * self.down * self.down
        work = (packed * self.width * (1 if self.down > 1 else 9) + self.blocks * 2 * 9 * self.width ** 2
                + packed * self.ch_out * self.up * self.up
                + self.down * self.down * self.in_blocks * 2 * 9 * self.ch_in ** 2)
        if self.up > 1:
            fine = self.up * self.up
            work += 9 * self.width * self.hi_width * fine
            work += fine * (self.hi_blocks * 2 * 9 * self.hi_width ** 2 + 9 * self.hi_width * self.ch_out)
        else:
            work += 9 * self.width * self.ch_out
        return 2.0 * work / (self.down * self.down)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BridgeConfig:
        return cls(**json.loads(text))


class BridgeNet(nn.Module):
    """Latent (B, ch_in, H, W) -> latent (B, ch_out, H*up/down, W*up/down), in the domain it was trained on.

    The per-channel statistics of both spaces are buffers, so the network takes and returns unnormalised latents.
    Sizes that are not multiples of ``down`` are padded (edge values) and the result cropped to round(size*ratio).
    """

    def __init__(self, config: BridgeConfig):
        super().__init__()
        c = self.config = config
        self.register_buffer("in_mean", torch.zeros(c.ch_in))
        self.register_buffer("in_std", torch.ones(c.ch_in))
        self.register_buffer("out_mean", torch.zeros(c.ch_out))
        self.register_buffer("out_std", torch.ones(c.ch_out))
        packed = c.ch_in * c.down * c.down
        self.pre = nn.Sequential(*[ResBlock(c.ch_in) for _ in range(c.in_blocks)])
        self.stem = nn.Conv2d(packed, c.width, 1 if c.down > 1 else 3, padding=0 if c.down > 1 else 1)
        self.body = nn.Sequential(*[ResBlock(c.width) for _ in range(c.blocks)], nn.SiLU())
        if c.up > 1:
            self.rise = nn.Conv2d(c.width, c.hi_width * c.up * c.up, 3, padding=1)
            self.fine = nn.Sequential(*[ResBlock(c.hi_width) for _ in range(c.hi_blocks)], nn.SiLU())
            self.head = nn.Conv2d(c.hi_width, c.ch_out, 3, padding=1)
        else:
            self.head = nn.Conv2d(c.width, c.ch_out, 3, padding=1)
        self.skip = nn.Conv2d(packed, c.ch_out * c.up * c.up, 1)  # a linear map on each input patch

    @property
    def ratio(self) -> Fraction:
        return Fraction(self.config.up, self.config.down)

    def set_statistics(self, in_mean: torch.Tensor, in_std: torch.Tensor, out_mean: torch.Tensor,
                       out_std: torch.Tensor) -> None:
        """Per-channel mean and std of the input and output spaces (from the training data)."""
        for name, v in (("in_mean", in_mean), ("in_std", in_std), ("out_mean", out_mean), ("out_std", out_std)):
            getattr(self, name).copy_(v.detach().reshape(-1).to(getattr(self, name)))

    def normalise_out(self, y: torch.Tensor) -> torch.Tensor:
        """Output-space latent -> the normalised units the losses compare in."""
        return (y - self.out_mean.view(1, -1, 1, 1)) / self.out_std.view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        h, w = x.shape[-2:]
        out_h, out_w = round(h * c.up / c.down), round(w * c.up / c.down)
        x = (x - self.in_mean.view(1, -1, 1, 1)) / self.in_std.view(1, -1, 1, 1)
        pad_h, pad_w = -h % c.down, -w % c.down
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        if c.down > 1:  # stem and skip are 1x1 convs over space-to-depth patches
            z, skip = patch_conv(self.pre(x), self.stem, c.down), patch_conv(x, self.skip, c.down)
        else:
            z, skip = self.stem(self.pre(x)), self.skip(x)
        z = self.body(z)
        if c.up > 1:
            y = self.head(self.fine(F.pixel_shuffle(self.rise(z), c.up))) + F.pixel_shuffle(skip, c.up)
        else:
            y = self.head(z) + skip
        y = y[..., :out_h, :out_w]
        return y * self.out_std.view(1, -1, 1, 1) + self.out_mean.view(1, -1, 1, 1)

