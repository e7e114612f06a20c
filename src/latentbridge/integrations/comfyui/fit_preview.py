"""Fit Preview Factors: preview factors for any ComfyUI VAE from a batch of images, saved where previews find them.

The images are encoded by the VAE, the latents taken to the taesd domain of their space and the factors fitted by
latentbridge's closed-form fitter (:func:`latentbridge.preview.fit_factors`): linear (no bias) and affine forms,
packed per 2x2 cell for FLUX.2 as the shipped factors are. The file goes to ComfyUI's ``models/vae_approx`` as
``factors-<name>.safetensors``, ``<name>`` being the latent format's class name (``Flux2``, ``SD15``...) unless
another is given; the live previews and Latent Preview then use it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from latentbridge import preview, spaces
from latentbridge.errors import InputError
from latentbridge.integrations.comfyui import models
from latentbridge.integrations.comfyui.common import AUTO, images_in, vae_spaces
from latentbridge.integrations.comfyui.live_preview import factors_files
from latentbridge.integrations.comfyui.node import Node, node_inputs, space_input
from latentbridge.integrations.comfyui.words import node_errors
from latentbridge.preview.fit import DEFAULT_RIDGE

FORMS = ("linear", "affine")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def space_of_vae(vae: Any, choice: str = AUTO) -> spaces.LatentSpace:
    """The space chosen on the node, else the only image space with the VAE's latent channels and downscale."""
    if choice != AUTO:
        return spaces.get(choice)
    found, facts = vae_spaces(vae)
    if len(found) == 1:
        return found[0]
    which = f"these spaces share them: {', '.join(s.id for s in found)}" if found else "no registered space has them"
    raise InputError(f"the VAE makes latents of {facts} of the image size and {which}: choose the space in the node's "
                     "'space' input")


def factors_name(space: spaces.LatentSpace, name: str = "") -> str:
    """The file name fitted factors are saved under: ``factors-<name>.safetensors``, by default the first name the
    previews look for (the latent format's class name, else the space id)."""
    name = name.strip()
    if not name:
        return factors_files(space)[0]
    if not _NAME.fullmatch(name):
        raise InputError(f"input 'name' must be a plain file name (letters, digits, '_', '-', '.'), got {name!r}")
    return factors_files(space, name)[0]


def centre_crop(images: torch.Tensor, cell: int) -> torch.Tensor:
    """(B, 3, H, W) cropped around the centre to whole latent cells, as ComfyUI's VAE Encode crops."""
    h, w = images.shape[-2:]
    if h < cell or w < cell:
        raise InputError(f"images of {w}x{h} px are smaller than one latent cell ({cell} px): use larger images")
    top, left = (h % cell) // 2, (w % cell) // 2
    return images[..., top: top + h - h % cell, left: left + w - w % cell]


def encode_taesd(vae: Any, images: torch.Tensor, space: spaces.LatentSpace) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] -> the VAE's latents in the taesd domain of ``space``, on the CPU, float32."""
    latent = vae.encode(images.permute(0, 2, 3, 1).contiguous())
    if latent.ndim == 5 and latent.shape[2] == 1:  # a video VAE gives one latent frame per still image
        latent = latent[:, :, 0]
    latent = latent.detach().float().cpu()
    spaces.validate(latent, space, "raw", finite=True)
    return space.to_taesd(space.to_model(latent))


def fit(images: torch.Tensor, vae: Any, space: str = AUTO, name: str = "", overwrite: bool = True,
        ridge: float = DEFAULT_RIDGE) -> tuple[str, str]:
    """Fit, save and describe preview factors; returns (the file's path, a report line per form)."""
    pixels = images_in(images, "images")
    sp = space_of_vae(vae, space)
    filename = factors_name(sp, name)
    pixels = centre_crop(pixels, sp.downscale)
    latent = encode_taesd(vae, pixels, sp)
    patch = sp.packing.patch if sp.packing else 1
    fitted = preview.fit_factors([(latent, pixels)], forms=FORMS, ridge=ridge, space=sp.id, patch=patch)
    scores = {form: float(preview.factors_psnr(f, latent, pixels).mean()) for form, f in fitted.items()}
    try:
        scores["built-in"] = float(preview.factors_psnr(preview.builtin(sp), latent, pixels).mean())
    except InputError:
        pass
    folder = Path(models.folder_paths().get_folder_paths(models.VAE_APPROX)[0])
    folder.mkdir(parents=True, exist_ok=True)
    path = preview.save_factors(folder / filename, fitted, space=sp.id, default="affine",
                                info={"images": len(pixels), "size": list(pixels.shape[-2:]), "source": "ComfyUI VAE",
                                      "psnr_db": scores}, overwrite=overwrite)
    lines = [f"{sp.id} preview factors from {len(pixels)} image(s) of {pixels.shape[-1]}x{pixels.shape[-2]} px -> "
             f"{path.name} (in vae_approx)"]
    lines += [f"{form}: {db:.2f} dB against the images averaged over each latent cell (fitting images)"
              for form, db in scores.items()]
    return str(path), "\n".join(lines)


class FitPreviewFactors(Node):
    NODE_ID = "LatentBridgeFitPreviewFactors"
    DISPLAY_NAME = "Fit Preview Factors (latentbridge)"
    DESCRIPTION = ("Fit latent-to-RGB preview factors (linear and affine) for any VAE from a dozen or more images, in "
                   "closed form, and save them in models/vae_approx, where Latent Preview and ComfyUI's live "
                   "previews (preview method auto or latent2rgb) use them: good previews for a model family that has "
                   "none. Varied photos fit best.")
    REQUIRED = node_inputs({
        "images": ("IMAGE", {"tooltip": "the images to fit on (a batch of the same size; a dozen varied "
                   "photos is plenty)"}),
        "vae": ("VAE", {"tooltip": "the VAE whose latents the factors preview"}),
        "space": space_input("latent space of the VAE. auto: the only space with its channel count and "
                             "downscale (choose it where several share them, e.g. sd1 and sdxl)"),
        "name": ("STRING", {"default": "", "tooltip": "saved as factors-<name>.safetensors; empty: the "
                 "latent format's name (e.g. Flux2, SD15), which the live previews look for"}),
        "overwrite": ("BOOLEAN", {"default": True, "tooltip": "replace an existing file of that name"}),
    })
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("path", "report")
    OUTPUT_TOOLTIPS = ("the factors file written in models/vae_approx",
                       "how well each form previews the images (PSNR in dB)")
    FUNCTION = "fit"
    OUTPUT_NODE = True

    @node_errors()
    def fit(self, images: torch.Tensor, vae: Any, space: str = AUTO, name: str = "",
            overwrite: bool = True) -> dict[str, Any]:
        path, report = fit(images, vae, space, name, overwrite)
        return {"ui": {"text": [report]}, "result": (path, report)}


NODES = (FitPreviewFactors,)
