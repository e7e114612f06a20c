"""What the nodes of the pack share at run time: the LATENT dict conventions and how a node settles the space of its
samples (how a node is declared: :mod:`latentbridge.integrations.comfyui.node`).

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

SPACE_KEY = "latentbridge_space"  # LATENT dict key: id of the space the samples are known to be in
AUTO = "auto"
NODE_HINT = "in ComfyUI, choose it in the node's 'space' input"


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


def format_space(latent_format: Any) -> spaces.LatentSpace | None:
    """The registry space of a ComfyUI latent format object (by its class name, e.g. ``SD15``), if latentbridge has
    one."""
    name = type(latent_format).__name__
    return next((s for s in spaces.all() if s.comfy_format == name), None)


def vae_spaces(vae: Any) -> tuple[list[spaces.LatentSpace], str]:
    """The spaces whose raw (or unpacked) latents a ComfyUI VAE makes, from its latent channels and spatial
    downscale, and those facts as words."""
    channels = int(vae.latent_channels)
    ratio = vae.downscale_ratio
    ratio = int(ratio[-1] if isinstance(ratio, (tuple, list)) else ratio)
    ndim = 2 + int(getattr(vae, "latent_dim", 2))
    fits = [s for s in spaces.all() if s.ndim == ndim and ((s.channels, s.downscale) == (channels, ratio) or (
        s.packing is not None and (s.taesd_channels, s.taesd_downscale) == (channels, ratio)))]
    return fits, f"{channels} channels at 1/{ratio}"


def _fits(samples: torch.Tensor, space: spaces.LatentSpace) -> bool:
    try:
        spaces.validate(samples, space, "raw", finite=False)
    except InputError:
        return False
    return True


def known_space(samples: torch.Tensor, choice: str, stated: spaces.LatentSpace | None = None, *, model: Any = None,
                input_name: str = "space") -> tuple[spaces.LatentSpace | None, str]:
    """The space chosen on the node, else the one ``stated`` by the latent or file, else the latent format of a
    connected ComfyUI ``model``, checked against the shape of the raw ``samples``; None when none of them says
    (never a guess). Returns it and how it was settled. A shape that does not fit names the node's input."""
    if choice != AUTO:
        space, how = spaces.get(choice), "chosen on the node"
    elif stated is not None:
        space, how = stated, "stated by the latent"
    elif model is not None and (space := format_space(latent_format := model.get_model_object("latent_format"))):
        how = f"from the MODEL's latent format ({type(latent_format).__name__})"
    else:
        return None, "not stated"
    try:
        spaces.validate(samples, space, "raw", finite=False)
    except InputError as e:
        raise InputError(f"{e} (the space was {how}): choose the latent's space in the node's '{input_name}' input, or "
                         "connect the latent that goes with it") from e
    return space, how


def _sure(found: spaces.Detection, pool: list[spaces.LatentSpace] | None) -> spaces.LatentSpace | None:
    """Detection's answer when it is sure, among ``pool`` only when given (the same share threshold)."""
    candidates = [c for c in found.candidates if pool is None or c.space in pool]
    share: dict[str, float] = {}
    for c in candidates:
        share[c.space.id] = share.get(c.space.id, 0.0) + c.confidence
    if not candidates or (pool is None and found.ambiguous):
        return None
    top = candidates[0].space
    if len(share) == 1 or share[top.id] / (sum(share.values()) or 1.0) >= spaces.MIN_CONFIDENCE:
        return top
    return None


def resolve_space(samples: torch.Tensor, choice: str, *, stated: spaces.LatentSpace | None = None,
                  required: bool = True, model: Any = None, vae: Any = None,
                  input_name: str = "space") -> tuple[spaces.LatentSpace | None, str]:
    """Like :func:`known_space`, then what a connected ComfyUI ``vae`` implies (its latent channels and downscale),
    then detection from the statistics, only when it is sure (among the VAE's spaces when one is connected).

    Returns the space (None only when ``required`` is False and nothing is sure) and how it was settled; otherwise
    the error names the node's ``input_name`` input.
    """
    space, how = known_space(samples, choice, stated, model=model, input_name=input_name)
    if space is not None:
        return space, how
    pool, among = None, ""
    if vae is not None:
        fits, facts = vae_spaces(vae)
        pool = [s for s in fits if _fits(samples, s)]
        if len(pool) == 1:
            return pool[0], f"from the VAE ({facts})"
        among = f" among the VAE's spaces ({facts}: {', '.join(s.id for s in pool) or 'none that fits this latent'})"
    if model is not None:
        name = type(model.get_model_object("latent_format")).__name__
        among += f"; the MODEL's latent format {name} is new to latentbridge"
    found = spaces.detect(samples, {"domain": "raw"})
    sure = _sure(found, pool)
    if sure is not None:
        return sure, f"detected from the statistics{among}: {found.summary}"
    if not required:
        return None, f"not known{among}: {found.ranking or found.summary}"
    if not found.candidates:
        raise InputError(f"{found.summary}: choose the latent's space in the node's '{input_name}' input")
    raise AmbiguousError(f"cannot tell which space this latent is from{among}: {found.ranking}; its statistics "
                         f"alone are not sure: choose it in the node's '{input_name}' input")
