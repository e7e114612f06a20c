"""What every node of the pack shares: the category, the LATENT dict conventions and the space input.

A ComfyUI ``LATENT`` is a dict whose ``samples`` tensor is in the **raw** domain (what the VAE emits), with optional
``noise_mask`` and ``batch_index``. Nodes of this pack add one key, :data:`SPACE_KEY`, holding the id of the space
the samples are known to be in (set by Load Latent, later by the interposer), so the next node need not guess.
Nodes never change a LATENT they were given: they return a new dict (other keys kept) with new tensors.
"""

from __future__ import annotations

from typing import Any

import torch

from latentbridge import spaces
from latentbridge.errors import AmbiguousError, InputError

CATEGORY = "latent/latentbridge"  # where ComfyUI lists its own latent tools
SPACE_KEY = "latentbridge_space"  # LATENT dict key: id of the space the samples are known to be in
AUTO = "auto"
NODE_HINT = "in ComfyUI, choose it in the node's 'space' input"


def space_choices() -> list[str]:
    """The values of a node's ``space`` input: ``auto`` then every registered space id."""
    return [AUTO, *(s.id for s in spaces.all())]


def space_input(tooltip: str) -> tuple[list[str], dict[str, str]]:
    """A ``space`` COMBO input defaulting to ``auto``."""
    return space_choices(), {"default": AUTO, "tooltip": tooltip}


def images_in(image: Any, name: str = "image") -> torch.Tensor:
    """A ComfyUI IMAGE (B, H, W, C) in [0, 1] as a new (B, 3, H, W) float tensor; InputError when it is not one."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (3, 4):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(f"input '{name}' must be a ComfyUI IMAGE (batch, height, width, 3), got {shape}: connect an "
                         "IMAGE output to it")
    return image[..., :3].permute(0, 3, 1, 2).float()  # RGBA: the alpha channel is dropped, as VAE Encode does


def images_out(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images -> a ComfyUI IMAGE (B, H, W, 3), float32 in [0, 1] on the CPU. Video frames
    (B, 3, T, H, W) become a batch of B*T images, clip after clip, each clip's frames in order (ComfyUI's video
    nodes take a clip as an IMAGE batch)."""
    if images.ndim == 5:
        images = images.transpose(1, 2).flatten(0, 1)
    return images.detach().clamp(0, 1).permute(0, 2, 3, 1).float().cpu().contiguous()


def compute_device() -> torch.device:
    """Where ComfyUI runs models (its ``--cpu`` flag and GPU choice honoured); the CPU outside ComfyUI."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return torch.device("cpu")
    return mm.get_torch_device()


def latent_samples(latent: Any, name: str = "samples") -> torch.Tensor:
    """The raw-domain tensor of a ComfyUI LATENT dict; InputError when ``latent`` is not one."""
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), torch.Tensor):
        raise InputError(f"input '{name}' must be a ComfyUI LATENT (a dict holding a 'samples' tensor), "
                         f"got {type(latent).__name__}: connect a LATENT output to it")
    return latent["samples"]


def stated_space(latent: dict) -> spaces.LatentSpace | None:
    """The space a pack node recorded in ``latent``, if any."""
    name = latent.get(SPACE_KEY)
    return spaces.get(name) if name else None


def new_latent(latent: dict, samples: torch.Tensor, space: spaces.LatentSpace | None) -> dict:
    """A new LATENT dict: the keys of ``latent`` kept, ``samples`` replaced and ``space`` recorded (or dropped)."""
    out = dict(latent)
    out["samples"] = samples
    if space is None:
        out.pop(SPACE_KEY, None)
    else:
        out[SPACE_KEY] = space.id
    return out


def known_space(samples: torch.Tensor, choice: str,
                stated: spaces.LatentSpace | None = None) -> tuple[spaces.LatentSpace | None, str]:
    """The space chosen on the node, else the one ``stated`` by the latent or file, checked against the shape of the
    raw ``samples``; None when neither says (never a guess). Returns it and how it was settled."""
    if choice != AUTO:
        space, how = spaces.get(choice), "chosen on the node"
    elif stated is not None:
        space, how = stated, "stated by the latent"
    else:
        return None, "not stated"
    spaces.validate(samples, space, "raw", finite=False)
    return space, how


def resolve_space(samples: torch.Tensor, choice: str, *, stated: spaces.LatentSpace | None = None,
                  required: bool = True) -> tuple[spaces.LatentSpace | None, str]:
    """Like :func:`known_space`, falling back to detection when it is unambiguous.

    Returns the space (None only when ``required`` is False and detection cannot tell) and how it was settled.
    """
    space, how = known_space(samples, choice, stated)
    if space is not None:
        return space, how
    found = spaces.detect(samples, {"domain": "raw"})
    if not found.ambiguous and found.best is not None:
        return found.best.space, f"detected: {found.summary}"
    if not required:
        return None, f"not known: {found.summary}"
    error = AmbiguousError if found.ambiguous else InputError  # what Detection.require() raises
    raise error(f"{found.summary}; {NODE_HINT}")
