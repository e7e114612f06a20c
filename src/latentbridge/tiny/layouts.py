"""Recognise how a TAESD-family state dict is laid out and bring it to the upstream ``.pth`` keys.

Layouts seen in the wild (docs/tiny-autoencoders.md):

* ``pth``: upstream files, one half each, keys ``<i>.<rest>`` (the decoder's first key index is 1);
* ``prefixed``: ``encoder.<i>.<rest>`` / ``decoder.<i>.<rest>`` (the state dict of a module holding both);
* ``diffusers``: ``encoder.layers.<i>.<rest>`` / ``decoder.layers.<i-1>.<rest>`` (``AutoencoderTiny`` and the
  ``taef2.safetensors`` hub file: the decoder's soft clamp is no layer there, so its indices shift down by one);
* ``comfyui``: ``taesd_encoder.<i>.<rest>`` / ``taesd_decoder.<i>.<rest>`` plus scalars ``vae_scale``/``vae_shift``.

The architecture variant and latent channel count are read from key names and shapes, never from file names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import WeightsFormatError
from ..weights import state_mismatch
from . import arch

HALVES = ("encoder", "decoder")
_WRAPPERS = ("module.", "_orig_mod.")  # DDP and torch.compile wrappers around any layout
_PREFIXES = {  # layout -> (encoder prefix, decoder prefix, decoder index shift)
    "comfyui": ("taesd_encoder.", "taesd_decoder.", 0),
    "diffusers": ("encoder.layers.", "decoder.layers.", 1),
    "prefixed": ("encoder.", "decoder.", 0),
}
_SCALARS = ("vae_scale", "vae_shift")


@dataclass(frozen=True)
class Half:
    """One network half in upstream keys, with what its weights say it is."""

    role: str  # encoder | decoder
    variant: str  # standard | flux_2 | f32
    latent_channels: int
    state: dict[str, torch.Tensor]


@dataclass(frozen=True)
class Parsed:
    """What a weight file holds: its layout, its halves, and ComfyUI's scale/shift when present."""

    layout: str
    halves: dict[str, Half]
    vae_scale: float | None = None
    vae_shift: float | None = None


def parse(tensors: Mapping[str, torch.Tensor], *, source: str = "weights") -> Parsed:
    """Split ``tensors`` into encoder/decoder halves in upstream keys; :class:`WeightsFormatError` if no layout fits."""
    flat = {_unwrap(k): v for k, v in tensors.items()}
    scalars = {k: float(flat.pop(k).reshape(-1)[0]) for k in _SCALARS if k in flat and flat[k].numel() == 1}
    for layout, (enc, dec, shift) in _PREFIXES.items():
        if not any(k.startswith((enc, dec)) for k in flat):
            continue
        parts = {"encoder": _strip(flat, enc, 0), "decoder": _strip(flat, dec, shift)}
        stray = sorted(k for k in flat if not k.startswith((enc, dec)))
        if stray:
            raise WeightsFormatError(_mismatch(source, layout, f"keys outside {enc}* and {dec}*", stray))
        halves = {role: _half(role, state, source) for role, state in parts.items() if state}
        return Parsed(layout, halves, scalars.get("vae_scale"), scalars.get("vae_shift"))
    if flat and all(re.match(r"\d+\.", k) for k in flat):
        role = "decoder" if _first_index(flat) >= 1 and "0.weight" not in flat else "encoder"
        return Parsed("pth", {role: _half(role, flat, source)}, scalars.get("vae_scale"), scalars.get("vae_shift"))
    raise WeightsFormatError(_mismatch(source, None, "no layout matches", sorted(flat)))


def _unwrap(key: str) -> str:
    for w in _WRAPPERS:
        if key.startswith(w):
            key = key[len(w):]
    return key


def _strip(flat: Mapping[str, torch.Tensor], prefix: str, shift: int) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in flat.items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix):].partition(".")
            out[f"{int(index) + shift}.{rest}" if index.isdigit() else key[len(prefix):]] = value
    return out


def _first_index(state: Mapping[str, torch.Tensor]) -> int:
    return min(int(k.split(".", 1)[0]) for k in state if k.split(".", 1)[0].isdigit())


def identify(role: str, state: Mapping[str, torch.Tensor]) -> tuple[str, int]:
    """(variant, latent channels) of a half in upstream keys, read from its key names and shapes."""
    if role == "encoder":
        first = state.get("0.weight")
        last = max((k for k in state if re.fullmatch(r"\d+\.weight", k)), key=lambda k: int(k.split(".")[0]),
                   default=None)
        if first is None or last is None:
            raise KeyError("0.weight")
        variant = "f32" if first.shape[0] == 32 else ("flux_2" if any(".pool." in k for k in state) else "standard")
        return variant, int(state[last].shape[0])
    first = state.get("1.weight")
    if first is None:
        raise KeyError("1.weight")
    variant = "f32" if first.shape[0] == 256 else ("flux_2" if any(".pool." in k for k in state) else "standard")
    return variant, int(first.shape[1])


def build(role: str, variant: str, latent_channels: int) -> nn.Sequential:
    """An empty network half of the given shape."""
    return (arch.encoder if role == "encoder" else arch.decoder)(latent_channels, variant)


def _half(role: str, state: dict[str, torch.Tensor], source: str) -> Half:
    try:
        variant, channels = identify(role, state)
    except KeyError as e:
        raise WeightsFormatError(_mismatch(source, None, f"the {role} has no key {e.args[0]}", sorted(state))) from None
    with torch.device("meta"):
        expected = build(role, variant, channels).state_dict()
    mismatch = state_mismatch(expected, state)
    if mismatch:
        raise WeightsFormatError(f"{source}: the {role} looks like a {variant} TAESD {role} with {channels} latent "
                                 f"channels but does not fit it: {mismatch}. The file is damaged or is a different "
                                 "model")
    if not all(v.is_floating_point() for v in state.values()):
        raise WeightsFormatError(f"{source}: the {role} holds non-float tensors; it is not a TAESD weight file")
    return Half(role, variant, channels, state)


def _few(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _mismatch(source: str, layout: str | None, why: str, found: list[str]) -> str:
    expected = ("upstream .pth keys '0.weight', '1.conv.0.weight', ... (encoder) or '1.weight', '3.conv.0.weight', "
                "... (decoder); or the same under 'encoder.'/'decoder.', 'encoder.layers.'/'decoder.layers.' "
                "(diffusers AutoencoderTiny) or 'taesd_encoder.'/'taesd_decoder.' (ComfyUI)")
    where = f" as {layout}" if layout else ""
    return (f"{source} is not a TAESD-family weight file{where} ({why}). Expected {expected}; found "
            f"{len(found)} keys: {_few(found) if found else 'none'}")
