"""Image encoders for dataset building: tiny autoencoders or a diffusers AutoencoderKL, behind one interface."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import devices, spaces
from ..errors import InputError


@dataclass
class Encoder:
    """Images (B, 3, H, W) in [0, 1] -> latents of ``space`` in ``domain``."""

    name: str
    spec: str
    space: spaces.LatentSpace
    domain: str
    fn: Callable[[torch.Tensor], torch.Tensor]

    @property
    def downscale(self) -> int:
        return self.space.downscale_in(self.domain)

    @property
    def channels(self) -> int:
        return self.space.channels_in(self.domain)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.fn(images)


def load_encoder(spec: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Encoder:
    """Load ``spec``: a tiny-autoencoder name or file (``taef2``, ``path.pth``), or ``diffusers:FOLDER`` for an
    AutoencoderKL; ``spec@space`` states the space when the weights don't. ``device`` may be ``"auto"``."""
    device = devices.resolve(device)
    source, _, space_name = spec.partition("@")
    folder = Path(source.removeprefix("diffusers:"))
    if source.startswith("diffusers:") or (folder.is_dir() and (folder / "config.json").is_file()):
        return _diffusers_encoder(spec, folder, space_name or None, device, dtype)
    from .. import tiny

    model = tiny.load(source, device=device, dtype=dtype)
    if not model.has_encoder:
        raise InputError(f"{spec}: the file holds only a decoder; give the encoder weights")
    space = spaces.get(space_name) if space_name else model.space
    if space is None:
        raise InputError(f"{spec}: cannot tell which latent space this encoder serves; write it as {source}@SPACE")
    name = Path(source).stem.removesuffix("_encoder") if Path(source).suffix else source.removesuffix("_encoder")

    def encode(images: torch.Tensor) -> torch.Tensor:
        return model.encode(images.to(device, dtype)).float()

    return Encoder(name, spec, space, "taesd", encode)


def _diffusers_encoder(spec: str, folder: Path, space_name: str | None, device, dtype) -> Encoder:
    try:
        from diffusers import AutoencoderKL
    except ImportError as e:
        raise InputError("encoding with a diffusers VAE needs diffusers: pip install 'latentbridge[diffusers]'") from e
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: not a diffusers model folder (no config.json)")
    config = json.loads((folder / "config.json").read_text())
    try:  # diffusers VAE configs name no space: their class, channels and scaling constants do
        space = spaces.get(space_name) if space_name else spaces.from_diffusers(config, ask=f"diffusers:{folder}@SPACE")
    except InputError as e:
        raise type(e)(f"{spec}: {e}") from None
    vae = AutoencoderKL.from_pretrained(folder, torch_dtype=dtype).to(device).eval()

    def encode(images: torch.Tensor) -> torch.Tensor:
        return vae.encode(images.to(device, dtype) * 2 - 1).latent_dist.mean.float()

    return Encoder(folder.name, spec, space, "raw", encode)
