"""The image loss of recipes that must invent detail: a frozen tiny decoder's picture of a latent against the photo.

Decoding a whole training crop forward and backward costs far more than the small networks being trained, so the
loss decodes one random window of the latent per step (the same window for every item) and leaves out a margin at
its edges, where the decoder's upsampling layers saw no context. The latent-resolution layers run on the whole
latent (:func:`latentbridge.tiny.tiling.decode_window`), so TAEF2's whole-image GroupNorm statistics are the ones the
real decode uses. The window's position comes from the torch RNG the trainer seeds per step, so a resumed run draws
the same windows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..tiny.tiling import decode_window


def window_mse(autoencoder: nn.Module, latent: torch.Tensor, image: torch.Tensor, *, window: int,
               margin: int) -> torch.Tensor:
    """MSE of the picture of a random ``window`` x ``window`` patch of a taesd-domain ``latent`` (B, C, h, w), by the
    tiny ``autoencoder``'s decoder table, against the same patch of ``image`` (B, 3, H, W) in [0, 1], ``margin``
    latent pixels of the edge left out.

    Gradients reach ``latent``; the decoder is the caller's, frozen.
    """
    h, w = latent.shape[-2:]
    win = min(window, h, w)
    margin = min(margin, (win - 1) // 2)
    top = int(torch.randint(0, h - win + 1, ()))
    left = int(torch.randint(0, w - win + 1, ()))
    d = image.shape[-1] // w
    picture = decode_window(autoencoder.decoder, latent.to(autoencoder.dtype), top, left, win)
    inner = slice(margin * d, (win - margin) * d)
    photo = image[..., top * d:(top + win) * d, left * d:(left + win) * d]
    return F.mse_loss(picture[..., inner, inner].float(), photo[..., inner, inner].float())
