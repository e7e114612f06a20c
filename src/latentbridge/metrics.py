"""The measures every benchmark, training recipe and model card reports, computed one way.

* :func:`psnr`: peak signal-to-noise ratio in dB per image, for images in ``[low, high]`` (``[0, 1]`` by default;
  both clamped to it first, as a viewer would show them).
* :func:`relative_mse`: the latent error per item relative to the variance of the target latent, the interposer
  measure (0: exact; 1: no better than predicting the target's mean).
"""

from __future__ import annotations

import torch


def psnr(a: torch.Tensor, b: torch.Tensor, *, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB of two image batches (B, ...) with values in ``[low, high]``."""
    mse = (a.float().clamp(low, high) - b.float().clamp(low, high)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10((high - low) ** 2 / mse.clamp_min(1e-12))


def relative_mse(pred: torch.Tensor, target: torch.Tensor, *, floor: float = 1e-12) -> torch.Tensor:
    """Per-item MSE of ``pred`` relative to the variance of ``target`` (B, ...), that variance at least ``floor``."""
    err = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return err / target.float().flatten(1).var(1).clamp_min(floor)
