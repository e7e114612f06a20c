"""Latent Upscale: learned or plain resizing of a LATENT by any ratio or to a pixel size, keeping its extra keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from latentbridge import spaces
from latentbridge.errors import InputError
from latentbridge.integrations.comfyui import models
from latentbridge.integrations.comfyui.common import AUTO, NODE_HINT, latent_samples, new_latent, resolve_space, stated_space
from latentbridge.integrations.comfyui.node import AUTO_SPACE, Node, latent_input, node_inputs, space_input, space_sources
from latentbridge.integrations.comfyui.words import node_errors
from latentbridge.upscale import LEARNED, METHODS, pixel_size, upscale_samples
from latentbridge.upscale.learned import weight_name


def model_choices() -> list[str]:
    """The model input's values: ``auto`` then the files in ComfyUI's latent_upscale_models folders."""
    return [AUTO, *models.model_files(models.LATENT_UPSCALE)]


def upscaler_path(choice: str, space: spaces.LatentSpace) -> Path | None:
    """The learned upscaler file to use: the one chosen, else ``upscaler-<space>.safetensors`` in ComfyUI's
    latent_upscale_models folders, else None (latentbridge then finds the space's shipped model)."""
    if choice != AUTO:
        return models.model_path(models.LATENT_UPSCALE, choice)
    own = weight_name(space)
    return models.model_path(models.LATENT_UPSCALE, own) if own in models.model_files(models.LATENT_UPSCALE) else None


def _spaces_for(tensor: torch.Tensor, choice: str, stated: spaces.LatentSpace | None, method: str, model: Any = None,
                vae: Any = None) -> tuple[spaces.LatentSpace, spaces.LatentSpace | None]:
    """(space to compute with, space to record). Plain resampling of an unpacked latent is the same in every space
    with its channel count, so an SD1/SDXL latent that detection cannot place is still resized (nothing recorded)."""
    sp, _ = resolve_space(tensor, choice, stated=stated, required=method in LEARNED, model=model, vae=vae)
    if sp is not None:
        return sp, sp
    found = spaces.detect(tensor, {"domain": "raw"})
    unpacked = [c.space for c in found.candidates if c.space.packing is None]
    if not unpacked:
        raise InputError(f"{found.summary}; {NODE_HINT}")
    return unpacked[0], None


def upscale_latent(latent: dict, method: str, scale_by: float, width: int, height: int, space: str,
                   model: str, diffusion_model: Any = None, vae: Any = None) -> tuple[dict, str]:
    """The resized LATENT (``noise_mask`` resized with it, ``batch_index`` kept) and a line saying what was done."""
    tensor = latent_samples(latent)
    sp, recorded = _spaces_for(tensor, space, stated_space(latent), method, diffusion_model, vae)
    size, scale = None, scale_by
    if width or height:
        size, scale = pixel_size(tensor.shape[-2:], sp, "raw", width=width or None, height=height or None), None
    mask = latent.get("noise_mask")
    h, w, d = tensor.shape[-2], tensor.shape[-1], sp.downscale
    # ComfyUI's samplers resize any mask to the latent; one at neither latent nor image resolution is left as it is
    odd_mask = isinstance(mask, torch.Tensor) and tuple(mask.shape[-2:]) not in ((h, w), (h * d, w * d))
    source = {k: v for k, v in latent.items() if not (odd_mask and k == "noise_mask")}
    path = upscaler_path(model, sp) if method in LEARNED else None
    out = upscale_samples(source, sp, scale, size=size, method=method, domain="raw", model=path)
    if odd_mask:
        out["noise_mask"] = mask
    new = out["samples"]
    text = (f"{sp.id if recorded else 'space not stated'} {tuple(tensor.shape)} -> {tuple(new.shape)}, image "
            f"{w * d}x{h * d} -> {new.shape[-1] * d}x{new.shape[-2] * d} px, {method}"
            + (f" ({path.name})" if path else ""))
    return new_latent(out, new, recorded) if recorded else out, text


class LatentUpscale(Node):
    NODE_ID = "LatentBridgeUpscale"
    DISPLAY_NAME = "Latent Upscale (latentbridge)"
    DESCRIPTION = ("Resize a LATENT by any ratio (0.5x shrinks) or to a size in image pixels, with the learned upscaler "
                   "(nn) or plain interpolation; FLUX.2 latents are resized unpacked, noise_mask follows, batch_index "
                   "is kept.")
    REQUIRED = node_inputs({
        "samples": latent_input("resize"),
        "method": (list(METHODS), {"default": "bicubic", "tooltip": "nn: the space's learned upscaler (trained "
                   "ratios only, e.g. 1x-4x and 0.5x); the others interpolate the latent (any ratio)"}),
        "scale_by": ("FLOAT", {"default": 2.0, "min": 0.05, "max": 8.0, "step": 0.05, "tooltip":
                     "ratio of the new size to the old; ignored when width or height is set"}),
        "width": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 8, "tooltip": "target width in image "
                  "pixels (a multiple of the space's latent cell); 0: from scale_by, or from height keeping "
                  "the aspect ratio"}),
        "height": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 8, "tooltip": "target height in "
                   "image pixels; 0: from scale_by, or from width keeping the aspect ratio"}),
        "space": space_input(f"space of the latent. {AUTO_SPACE}; plain methods also resize latents none of "
                             "these can place"),
        "model": (model_choices, {"default": AUTO, "tooltip": "learned upscaler for nn, from "
                  "models/latent_upscale_models. auto: upscaler-<space>.safetensors there, else the one "
                  "shipped with latentbridge"}),
    })
    OPTIONAL = space_sources(model_input="diffusion_model")
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("the resized latent (raw domain) with its other keys",)
    FUNCTION = "upscale"

    @node_errors()
    def upscale(self, samples: dict, method: str = "bicubic", scale_by: float = 2.0, width: int = 0, height: int = 0,
                space: str = AUTO, model: str = AUTO, diffusion_model: Any = None, vae: Any = None) -> dict[str, Any]:
        out, text = upscale_latent(samples, method, scale_by, width, height, space, model, diffusion_model, vae)
        return {"ui": {"text": [text]}, "result": (out,)}


NODES = (LatentUpscale,)
