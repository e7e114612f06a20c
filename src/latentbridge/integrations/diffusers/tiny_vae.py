"""A drop-in for a FLUX.2 pipeline's ``vae``: TAEF2 behind ``AutoencoderKLFlux2``'s interface.

diffusers' own ``AutoencoderTiny`` cannot build TAEF2 (its GroupNorm blocks), so FLUX.2 pipelines get this:

    pipe.vae = TinyFlux2VAE.from_vae(pipe.vae)      # or TinyFlux2VAE() without the full VAE in memory

What the pipelines do around ``vae`` (diffusers ``pipeline_flux2*.py``): before decoding they undo the batch-norm
normalisation with ``vae.bn`` running statistics and ``vae.config.batch_norm_eps`` and unpatchify 128 channels at
/16 to 32 channels at /8; after encoding they patchify and normalise the same way. TAEF2 works on the normalised,
unpatchified latent (latentbridge's ``taesd`` domain for flux2), so ``decode`` re-applies that normalisation with the
same statistics and ``encode`` undoes it: the pair cancels exactly whatever statistics ``bn`` holds. Images are
[-1, 1] at this interface, as for every diffusers VAE.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ... import spaces
from ...errors import InputError
from ...tiny import TinyAutoencoder
from ...tiny import load as load_tiny

FLUX2_CHANNELS = 128  # patchified channels the batch norm runs over
BLOCK_OUT_CHANNELS = (128, 256, 512, 512)  # what the pipelines read to get their /8 vae_scale_factor


class TinyFlux2VAE(nn.Module):
    """TAEF2 as a FLUX.2 ``pipe.vae``: ``encode(images[-1, 1]).latents``, ``decode(latents).sample``."""

    def __init__(self, model: TinyAutoencoder | str = "taef2", *, batch_norm_eps: float = 1e-4,
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        from diffusers.configuration_utils import FrozenDict

        super().__init__()
        tiny = load_tiny(model, device=device, dtype=dtype) if isinstance(model, str) else model
        if tiny.variant != "flux_2" or tiny.latent_channels != 32:
            raise InputError(f"TinyFlux2VAE needs a TAEF2 model (flux_2 variant, 32 channels); got {tiny.variant} "
                             f"with {tiny.latent_channels} channels")
        self.tiny = copy.deepcopy(tiny)  # pipe.to() changes modules in place: keep the shared cached copy intact
        self.bn = nn.BatchNorm2d(FLUX2_CHANNELS, eps=batch_norm_eps, affine=False)
        self.bn.to(device=self.tiny.device).eval()
        self.config = FrozenDict(block_out_channels=BLOCK_OUT_CHANNELS, latent_channels=32,
                                 batch_norm_eps=batch_norm_eps, patch_size=(2, 2), scaling_factor=1.0,
                                 shift_factor=0.0, force_upcast=False)
        self.tile: int | None = None
        self.slice = False

    @classmethod
    def from_vae(cls, vae: Any, model: TinyAutoencoder | str = "taef2", **kwargs: Any) -> TinyFlux2VAE:
        """Replace an ``AutoencoderKLFlux2``: same batch-norm statistics, device and dtype."""
        param = next(vae.parameters())
        out = cls(model, batch_norm_eps=vae.config.batch_norm_eps, device=kwargs.pop("device", param.device),
                  dtype=kwargs.pop("dtype", param.dtype), **kwargs)
        with torch.no_grad():
            out.bn.running_mean.copy_(vae.bn.running_mean)
            out.bn.running_var.copy_(vae.bn.running_var)
        return out

    @property
    def dtype(self) -> torch.dtype:
        return self.tiny.dtype

    @property
    def device(self) -> torch.device:
        return self.tiny.device

    def enable_tiling(self, tile: int = 32) -> None:
        """Decode in tiles of ``tile`` latent pixels (bounded memory, same result)."""
        self.tile = tile

    def disable_tiling(self) -> None:
        self.tile = None

    def enable_slicing(self) -> None:
        """Decode batch items one at a time."""
        self.slice = True

    def disable_slicing(self) -> None:
        self.slice = False

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
        std = torch.sqrt(self.bn.running_var.view(1, -1, 1, 1) + self.config.batch_norm_eps).to(like.device, like.dtype)
        return mean, std

    def to_taesd(self, latents: torch.Tensor) -> torch.Tensor:
        """The pipelines' 32-channel latent at /8 (un-normalised) -> TAEF2's input (normalised, same layout)."""
        if latents.ndim != 4 or latents.shape[1] != 32:
            raise InputError(f"a FLUX.2 VAE latent is (B, 32, H, W); got {tuple(latents.shape)}")
        packed = spaces.pack(latents, 2)
        mean, std = self._stats(packed)
        return spaces.unpack((packed - mean) / std, 2)

    def from_taesd(self, latent: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_taesd`."""
        packed = spaces.pack(latent, 2)
        mean, std = self._stats(packed)
        return spaces.unpack(packed * std + mean, 2)

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> Any:
        """Images in [-1, 1] -> ``AutoencoderTinyOutput(latents=...)`` (what ``retrieve_latents`` reads)."""
        from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTinyOutput

        latents = self.from_taesd(self.tiny.encode((x + 1) / 2))
        return AutoencoderTinyOutput(latents=latents) if return_dict else (latents,)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator: Any = None) -> Any:
        """The pipelines' 32-channel latent -> ``DecoderOutput(sample=images in [-1, 1])``."""
        from diffusers.models.autoencoders.vae import DecoderOutput

        taesd = self.to_taesd(z)
        parts = taesd.split(1) if self.slice else (taesd,)
        images = torch.cat([self.tiny.decode(p, tile=self.tile) for p in parts]).mul(2).sub(1)
        return DecoderOutput(sample=images) if return_dict else (images,)

    def forward(self, sample: torch.Tensor, return_dict: bool = True) -> Any:
        """Encode then decode, like diffusers VAEs."""
        from diffusers.models.autoencoders.vae import DecoderOutput

        decoded = self.decode(self.encode(sample).latents).sample
        return DecoderOutput(sample=decoded) if return_dict else (decoded,)
