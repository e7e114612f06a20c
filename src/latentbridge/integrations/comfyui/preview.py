"""Latent Preview: a LATENT as an IMAGE batch, by linear factors, the neural previewer or a tiny decoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from latentbridge import preview
from latentbridge.integrations.comfyui.common import AUTO, images_out, latent_samples, resolve_space, stated_space
from latentbridge.integrations.comfyui.live_preview import installed_factors
from latentbridge.integrations.comfyui.node import AUTO_SPACE, Node, latent_input, node_inputs, space_input, space_sources
from latentbridge.integrations.comfyui.words import node_errors


def preview_latent(latent: dict, method: str = AUTO, space: str = AUTO, size: int = 0, model: Any = None,
                   vae: Any = None) -> tuple[torch.Tensor, str]:
    """A ComfyUI IMAGE of the LATENT (one image per latent, per frame for video latents) and a line saying how."""
    tensor = latent_samples(latent)
    sp, how = resolve_space(tensor, space, stated=stated_space(latent), model=model, vae=vae)
    chosen = preview.best_method(sp) if method == AUTO else method
    fitted = installed_factors(sp) if chosen == "linear" else None  # what Fit Preview Factors saved
    images = preview.preview(tensor, sp, method=chosen, domain="raw", factors=fitted, size=size or None)
    count = f"{images.shape[0]} image(s)" if images.ndim == 4 else (
        f"{images.shape[0]} clip(s) of {images.shape[2]} frames ({images.shape[0] * images.shape[2]} images)")
    text = (f"{sp.id} ({how.split(':')[0]}) {tuple(tensor.shape)} -> {count} of "
            f"{images.shape[-1]}x{images.shape[-2]} px by {chosen}" + (" (auto)" if method == AUTO else "")
            + (f" with {Path(fitted).name}" if fitted else ""))
    return images_out(images), text


class LatentPreview(Node):
    NODE_ID = "LatentBridgePreview"
    DISPLAY_NAME = "Latent Preview (latentbridge)"
    DESCRIPTION = ("See a LATENT without a VAE decode: linear factors (instant), the neural previewer (much better, "
                   "nearly as cheap) or the tiny decoder (full size). A batch becomes a batch of images, a video "
                   "LATENT (Wan, HunyuanVideo, LTX) the frames of each clip in turn; NaN or infinite latent pixels "
                   "show magenta.")
    REQUIRED = node_inputs({
        "samples": latent_input("preview"),
        "method": ([AUTO, *preview.METHODS], {"default": AUTO, "tooltip": "linear: factors (those Fit "
                   "Preview Factors saved in vae_approx, else the built-in ones), at latent resolution; "
                   "neural: the small trained previewer, at latent resolution; tiny: the tiny decoder from "
                   "models/vae_approx, full size. auto: the best one available for the space"}),
        "space": space_input(f"space of the latent. {AUTO_SPACE}"),
        "size": ("INT", {"default": 0, "min": 0, "max": 8192, "tooltip": "longer side of each preview in "
                 "pixels; 0: as the method gives it"}),
    })
    OPTIONAL = space_sources()
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("the previews in [0, 1], one per latent (per latent frame for video)",)
    FUNCTION = "preview"

    @node_errors()
    def preview(self, samples: dict, method: str = AUTO, space: str = AUTO, size: int = 0, model: Any = None,
                vae: Any = None) -> dict[str, Any]:
        images, text = preview_latent(samples, method, space, size, model, vae)
        return {"ui": {"text": [text]}, "result": (images,)}


NODES = (LatentPreview,)
