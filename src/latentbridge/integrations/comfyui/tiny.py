"""Tiny VAE Loader, Encode and Decode: any TAESD-family file in ComfyUI's ``models/vae_approx``.

The loader lists each model whose halves it finds (``taef2`` for ``taef2_encoder.pth`` + ``taef2_decoder.pth``)
and every file on its own; the variant and channel count come from the weights (:func:`latentbridge.tiny.load`),
the space from the name, the file's metadata, or the loader's ``space`` input.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from latentbridge import spaces, tiny
from latentbridge.errors import InputError
from latentbridge.integrations.comfyui import models
from latentbridge.integrations.comfyui.common import (
    AUTO,
    compute_device,
    images_in,
    images_out,
    latent_samples,
    new_latent,
    stated_space,
)
from latentbridge.integrations.comfyui.node import Node, latent_input, node_inputs, space_input
from latentbridge.integrations.comfyui.words import node_errors
from latentbridge.tiny.layouts import HALVES
from latentbridge.tiny.loader import space_of, split_name

TINY_VAE = "LATENTBRIDGE_TINY_VAE"  # the socket type between the loader and the encode/decode nodes
FITS = ("crop", "pad", "error")
_PREFERRED = (".safetensors", ".pth", ".pt")  # when one half exists in several formats


def _known(filename: str) -> tuple[str, str | None] | None:
    """(model name, half) of a file named like an upstream TAESD file, e.g. ``taef2_decoder.pth``."""
    return split_name(Path(filename).stem)


def tiny_choices() -> list[str]:
    """The loader's choices: models whose halves are in vae_approx (by name), then every file there."""
    files = models.model_files(models.VAE_APPROX)
    names = sorted({known[0] for f in files if (known := _known(f)) and known[1]})
    return names + files


def tiny_files(choice: str) -> list[Path]:
    """The files a loader choice stands for: the file itself, or each half found for a model name."""
    files = models.model_files(models.VAE_APPROX)
    if choice in files:
        return [models.model_path(models.VAE_APPROX, choice)]
    halves = []
    for half in HALVES:
        found = sorted((f for f in files if _known(f) == (choice, half)),
                       key=lambda f: _PREFERRED.index(Path(f).suffix) if Path(f).suffix in _PREFERRED else 99)
        halves += found[:1]
    if not halves:
        raise InputError(f"no tiny autoencoder {choice!r} in ComfyUI's vae_approx folders: put {choice}_encoder.pth and "
                         f"{choice}_decoder.pth (or a single file) there, then refresh")
    return [models.model_path(models.VAE_APPROX, f) for f in halves]


def load_tiny(choice: str, space: str = AUTO) -> tiny.TinyAutoencoder:
    """The tiny autoencoder of a loader choice on ComfyUI's device; the space chosen, else the one its name implies."""
    known = _known(choice) or (choice, None)
    implied = space_of(known[0])
    sp = spaces.get(space) if space != AUTO else implied
    return tiny.load(tiny_files(choice), device=compute_device(), space=sp)


def _describe(model: tiny.TinyAutoencoder) -> str:
    halves = " + ".join(h for h in HALVES if getattr(model, h) is not None)
    space = model.space.id if model.space else "not known (choose it on the loader to encode or decode LATENTs)"
    return (f"{model.variant} tiny autoencoder, {model.latent_channels} channels, /{model.downscale}, {halves}; "
            f"space {space}")


def _model(value: Any, half: str) -> tiny.TinyAutoencoder:
    """The loader's tiny autoencoder, checked to know its space and to hold ``half`` (encoder or decoder)."""
    if not isinstance(value, tiny.TinyAutoencoder):
        raise InputError("input 'tiny_vae' must come from Tiny VAE Loader (latentbridge)")
    if value.space is None:
        raise InputError(f"this tiny autoencoder ({_describe(value)}) does not know its latent space, so it cannot read "
                         "or write ComfyUI LATENTs: choose the space on Tiny VAE Loader (latentbridge)")
    if getattr(value, half) is None:
        name = value.space.tiny or (value.name or "").removesuffix("_encoder").removesuffix("_decoder")
        file = f"{name}_{half}.pth" if name else f"the {half} file of the {value.space.id} tiny autoencoder"
        load = f"choose '{name}' on Tiny VAE Loader (latentbridge)" if name else "load it on Tiny VAE Loader"
        raise InputError(f"this tiny autoencoder ({_describe(value)}) has no {half}: put {file} in models/vae_approx "
                         f"beside the other half and {load}, then refresh")
    return value


class TinyVAELoader(Node):
    NODE_ID = "LatentBridgeTinyVAELoader"
    DISPLAY_NAME = "Tiny VAE Loader (latentbridge)"
    DESCRIPTION = ("Load a TAESD-family tiny autoencoder (taesd, taesdxl, taesd3, taef1, taef2, taesana, any layout: "
                   "upstream .pth, safetensors, diffusers, ComfyUI) from models/vae_approx, for Tiny VAE Encode/Decode.")
    REQUIRED = node_inputs({
        "tiny_vae": (tiny_choices, {"tooltip": "a model by name (both of its halves found in vae_approx, e.g. "
                     "taef2) or a single file; refresh after adding files"}),
        "space": space_input("latent space the model serves. auto: from its name or file (choose it for "
                             "renamed 4- or 16-channel files, which several spaces share)"),
    })
    RETURN_TYPES = (TINY_VAE,)
    RETURN_NAMES = ("tiny_vae",)
    OUTPUT_TOOLTIPS = ("the tiny autoencoder (encoder, decoder or both)",)
    FUNCTION = "load"

    @classmethod
    def IS_CHANGED(cls, tiny_vae: str, **_: Any) -> str:
        try:
            stats = [(str(path), path.stat().st_mtime_ns, path.stat().st_size) for path in tiny_files(tiny_vae)]
        except (InputError, OSError):
            return tiny_vae  # loading reports the problem
        # a digest, not the paths: ComfyUI copies this into the metadata of the files a workflow saves
        return hashlib.sha256(repr(stats).encode()).hexdigest()[:16]

    @node_errors()
    def load(self, tiny_vae: str, space: str = AUTO) -> dict[str, Any]:
        model = load_tiny(tiny_vae, space)
        return {"ui": {"text": [f"{tiny_vae}: {_describe(model)}"]}, "result": (model,)}


class TinyVAEEncode(Node):
    NODE_ID = "LatentBridgeTinyVAEEncode"
    DISPLAY_NAME = "Tiny VAE Encode (latentbridge)"
    DESCRIPTION = "Encode an IMAGE batch into a LATENT (raw domain, its space recorded) with a tiny autoencoder."
    REQUIRED = node_inputs({
        "pixels": ("IMAGE", {"tooltip": "the images to encode (a batch gives a batch)"}),
        "tiny_vae": (TINY_VAE, {"tooltip": "a tiny autoencoder with an encoder, from Tiny VAE Loader"}),
        "fit": (list(FITS), {"default": "crop", "tooltip": "images whose size is not a whole number of latent "
                "cells: crop the right/bottom edge (like VAE Encode), pad it by repeating the edge, or refuse"}),
    })
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("one latent per image, in the raw domain that VAE Decode and the samplers expect",)
    FUNCTION = "encode"

    @node_errors()
    def encode(self, pixels: torch.Tensor, tiny_vae: tiny.TinyAutoencoder, fit: str = "crop") -> tuple[dict]:
        model = _model(tiny_vae, "encoder")
        return (new_latent({}, model.encode(images_in(pixels, "pixels"), domain="raw", fit=fit), model.space),)


class TinyVAEDecode(Node):
    NODE_ID = "LatentBridgeTinyVAEDecode"
    DISPLAY_NAME = "Tiny VAE Decode (latentbridge)"
    DESCRIPTION = "Decode a LATENT into an IMAGE batch with a tiny autoencoder: a fast, approximate VAE Decode."
    REQUIRED = node_inputs({
        "samples": latent_input("decode", note="raw domain, as every ComfyUI LATENT"),
        "tiny_vae": (TINY_VAE, {"tooltip": "the tiny autoencoder of the latent's space, with a decoder"}),
    })
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("one image per latent (a batch gives a batch)",)
    FUNCTION = "decode"

    @node_errors()
    def decode(self, samples: dict, tiny_vae: tiny.TinyAutoencoder) -> tuple[torch.Tensor]:
        model = _model(tiny_vae, "decoder")
        tensor = latent_samples(samples)
        stated = stated_space(samples)
        if stated is not None and stated is not model.space:
            raise InputError(f"the latent is a {stated.id} latent but the tiny autoencoder serves {model.space.id}: "
                             f"load the tiny autoencoder of {stated.id}, or convert the latent with Latent Interposer")
        return (images_out(model.decode(tensor.float(), domain="raw")),)


NODES = (TinyVAELoader, TinyVAEEncode, TinyVAEDecode)
