"""Building blocks of latentbridge's own small networks (the bridge interposer and the learned upscaler)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """x + conv(SiLU(conv(SiLU(x)))), 3x3 convs. The second conv starts at zero, so a fresh block is the identity:
    a net grown by blocks computes what it did before (``train.recipe.grows``)."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


def patch_conv(x: torch.Tensor, conv: nn.Conv2d, patch: int) -> torch.Tensor:
    """``conv(F.pixel_unshuffle(x, patch))`` for a 1x1 ``conv``, computed as the same sum by a patch x patch conv
    with stride ``patch`` (unshuffled channel ``c * patch**2 + i * patch + j`` is pixel (i, j) of channel c), which
    skips the unshuffled copy."""
    weight = conv.weight.reshape(conv.out_channels, x.shape[1], patch, patch)
    return F.conv2d(x, weight, conv.bias, stride=patch)
