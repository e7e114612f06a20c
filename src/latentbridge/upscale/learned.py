"""The learned latent upscaler: a small convolutional network conditioned on the ratio, in the taesd domain.

It mirrors the decode-resize-encode round trip it replaces, at a fraction of the cost: a low-resolution trunk turns
each latent pixel into a ``sub`` x ``sub`` grid of features (a cheap stand-in for the decoded image), that grid is
resampled to the target size like an image would be (antialiased, so 0.5x works too), and a head re-encodes it at the
output resolution, adding a correction to the bilinearly resampled latent. The ratio enters the head as an
embedding of ``log(scale)`` per axis.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import devices, spaces, weights
from ..blocks import ResBlock, patch_conv
from ..errors import InputError, LatentBridgeError, UnknownSpaceError, WeightsFormatError, WeightsNotFoundError
from .plain import Scale, target_size

FOLDER = "latent_upscale_models"  # models-folder kind, named as ComfyUI names its folder (models/latent_upscale_models)
KIND = "upscaler"


@dataclass(frozen=True)
class UpscalerConfig:
    """Architecture of an upscaler network (stored in the weight file's metadata)."""

    # block counts a fine-tune may raise over a trained file's: added blocks start as the identity
    GROWABLE: ClassVar[tuple[str, ...]] = ("blocks", "head_blocks")

    channels: int = 32  # latent channels in the taesd domain (4, 16, 32, ...)
    width: int = 64  # trunk channels at the input resolution
    blocks: int = 4  # residual blocks in the trunk
    sub: int = 4  # sub-latent grid per latent pixel (resampled like an image)
    sub_channels: int = 16  # features per sub-latent cell
    head: int = 64  # head channels at the output resolution
    head_blocks: int = 1  # residual blocks in the head
    scale_ranges: tuple[tuple[float, float], ...] = ((0.5, 0.5), (1.0, 4.0))  # ratios it was trained on

    @classmethod
    def from_dict(cls, data: dict) -> UpscalerConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise WeightsFormatError(f"upscaler config has unknown field(s) {', '.join(unknown)}: "
                                     "the file was written by a newer latentbridge; upgrade")
        values = dict(data)
        if "scale_ranges" in values:
            values["scale_ranges"] = tuple(tuple(float(v) for v in r) for r in values["scale_ranges"])
        return cls(**values)

    def covers(self, scale: float, tolerance: float = 0.02) -> bool:
        """True when ``scale`` lies in one of the trained ranges (relative ``tolerance`` at the edges)."""
        return any(lo * (1 - tolerance) <= scale <= hi * (1 + tolerance) for lo, hi in self.scale_ranges)

    def describe_ranges(self) -> str:
        return " and ".join(f"{lo:g}x" if lo == hi else f"{lo:g}x to {hi:g}x" for lo, hi in self.scale_ranges)


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class UpscalerNet(nn.Module):
    """taesd-domain latent (B, C, h, w) and a target size (H, W) -> latent (B, C, H, W)."""

    def __init__(self, config: UpscalerConfig):
        super().__init__()
        c = config
        self.config = c
        self.conv_in = _conv(c.channels, c.width)
        self.trunk = nn.Sequential(*[ResBlock(c.width) for _ in range(c.blocks)])
        self.to_sub = _conv(c.width, c.sub * c.sub * c.sub_channels, 1)
        self.from_sub = _conv(c.sub * c.sub * c.sub_channels, c.head, 1)
        self.embed = nn.Sequential(nn.Linear(2, 32), nn.SiLU(), nn.Linear(32, c.head))
        self.head = nn.Sequential(*[ResBlock(c.head) for _ in range(c.head_blocks)])
        self.conv_out = _conv(c.head, c.channels)
        nn.init.zeros_(self.conv_out.weight)  # starts as the bilinear resample
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, z: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        c = self.config
        (h, w), (oh, ow) = z.shape[-2:], (int(size[0]), int(size[1]))
        feats = self.trunk(self.conv_in(z))
        grid = F.pixel_shuffle(self.to_sub(feats), c.sub)
        grid = F.interpolate(grid, size=(oh * c.sub, ow * c.sub), mode="bilinear", align_corners=False,
                             antialias=(oh < h or ow < w))
        x = patch_conv(grid, self.from_sub, c.sub)  # from_sub over each sub x sub cell of the grid
        ratio = torch.tensor([[math.log(oh / h), math.log(ow / w)]], device=z.device, dtype=z.dtype)
        x = self.head(x + self.embed(ratio)[:, :, None, None])
        base = F.interpolate(z, size=(oh, ow), mode="bilinear", align_corners=False, antialias=(oh < h or ow < w))
        return base + self.conv_out(F.silu(x))


@dataclass
class LearnedUpscaler:
    """A loaded upscaler: the network, the space it serves, and where it came from."""

    net: UpscalerNet
    space: spaces.LatentSpace
    path: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> UpscalerConfig:
        return self.net.config

    @torch.no_grad()
    def __call__(self, latent: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """taesd-domain latent (4-D, or 5-D with frames folded) -> taesd-domain latent of ``size``."""
        if latent.shape[1] != self.config.channels:
            raise InputError(f"the loaded upscaler ({self._name()}) takes {self.config.channels}-channel taesd-domain "
                             f"latents, got {latent.shape[1]} channels: load the upscaler of this latent's space")
        if latent.ndim == 5:
            b, ch, t, h, w = latent.shape
            flat = latent.permute(0, 2, 1, 3, 4).reshape(b * t, ch, h, w)
            return self(flat, size).reshape(b, t, ch, *size[-2:]).permute(0, 2, 1, 3, 4)
        param = next(self.net.parameters())
        # channels-last activations run oneDNN's convolutions without layout reorders (30-45% faster on CPU)
        out = self.net(latent.to(param.device, param.dtype, memory_format=torch.channels_last), size)
        return out.to(latent.device, latent.dtype).contiguous()

    def _name(self) -> str:
        return f"{self.space.id}, {self.path.name}" if self.path else self.space.id


def weight_name(space: spaces.LatentSpace) -> str:
    return f"upscaler-{space.id}.safetensors"


def to_tensors(net: UpscalerNet, space: spaces.LatentSpace, extra: dict[str, str] | None = None
               ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict and metadata block of a trained upscaler, as written to its safetensors file."""
    meta = weights.model_metadata(kind=KIND, spaces=[space.id], domains=["taesd"], config=asdict(net.config),
                                  extra=extra)
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, meta


def load(
    space_or_path: str | os.PathLike | spaces.LatentSpace,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LearnedUpscaler:
    """Load the upscaler of a space by name (the shipped model first, then the user's model folders) or from a file.

    Cached per file, device and dtype (:func:`latentbridge.weights.load_model`).
    """
    path = _find(space_or_path)
    net, info = weights.load_model(path, kind=KIND, build=_build, device=device, dtype=dtype, prepare=_channels_last)
    return LearnedUpscaler(net, spaces.get(info.space), path, info.metadata)  # type: ignore[arg-type]


def _build(info: weights.ModelInfo) -> UpscalerNet:
    try:
        spaces.get(info.space)
        return UpscalerNet(UpscalerConfig.from_dict(info.config))
    except (LatentBridgeError, KeyError, TypeError, ValueError) as e:
        raise WeightsFormatError(f"the upscaler's metadata is incomplete ({e})") from None


def _channels_last(net: torch.nn.Module) -> torch.nn.Module:
    """Inference layout: channels-last weights, like the activations ``LearnedUpscaler`` hands in."""
    return net.to(memory_format=torch.channels_last)


def _find(ref: str | os.PathLike | spaces.LatentSpace) -> Path:
    """A weight file from a space (its named upscaler: the shipped one first) or a file name or path."""
    if isinstance(ref, spaces.LatentSpace):
        sp = ref
    elif not isinstance(ref, str | os.PathLike):
        raise InputError(f"model= is an upscaler file, a space's name or a LearnedUpscaler; got {ref!r}")
    elif Path(ref).is_file():
        return Path(ref)
    else:
        try:
            sp = spaces.get(str(ref))
        except UnknownSpaceError:
            return weights.resolve(ref, folder=FOLDER)
    name, files = f"upscaler-{sp.id}", [weight_name(sp)]
    try:
        return weights.resolve(name, filenames=files, models_dir=weights.PACKAGE_MODELS, allow_download=False)
    except WeightsNotFoundError:
        pass
    try:
        return weights.resolve(name, filenames=files, folder=FOLDER)
    except WeightsNotFoundError as e:
        raise WeightsNotFoundError(f"no learned upscaler for {sp.id}: {e}. Train one with the 'upscaler' recipe "
                                   "(see configs/upscaler-flux2.toml), or use a plain method such as "
                                   "bicubic") from None


def upscale_learned(
    latent: torch.Tensor,
    space: str | spaces.LatentSpace,
    scale: Scale | None = None,
    *,
    domain: spaces.Domain = spaces.DEFAULT_DOMAIN,
    size: Sequence[int] | None = None,
    model: str | os.PathLike | LearnedUpscaler | None = None,
) -> torch.Tensor:
    """Upscale a latent of ``space`` in ``domain`` with the learned upscaler; the ratio must be one it was trained
    for. The network runs in the taesd domain and in the latent's dtype (float16 on a CPU: float32,
    :func:`latentbridge.devices.compute_dtype`; a loaded ``model`` in its own); the result comes back in ``domain``,
    on the input's device and dtype.
    """
    sp = spaces.get(space)
    spaces.validate(latent, sp, domain, finite=False)
    out_hw = target_size(latent.shape[-2:], scale, size)
    if tuple(out_hw) == tuple(latent.shape[-2:]):
        return latent.clone()
    up = model if isinstance(model, LearnedUpscaler) else load(
        model if model is not None else sp, device=latent.device,
        dtype=devices.compute_dtype(latent.dtype, latent.device))
    if up.space is not sp:
        raise InputError(f"the loaded upscaler serves {up.space.id} ({up.config.channels}-channel taesd-domain "
                         f"latents); this is a {sp.id} latent ({sp.taesd_channels} channels in the taesd domain): "
                         f"load the upscaler of {sp.id}, or use a plain method such as bicubic")
    ratios = (out_hw[0] / latent.shape[-2], out_hw[1] / latent.shape[-1])
    bad = [r for r in ratios if not up.config.covers(r)]
    if bad:
        raise InputError(f"ratio {bad[0]:.3g}x is outside the range the {up.space.id} upscaler was trained for "
                         f"({up.config.describe_ranges()}): use a plain method instead, e.g. bicubic "
                         f"(or antialias to shrink), or upscale in two steps")
    p = sp.packing.patch if (sp.packing and domain != "taesd") else 1
    z = spaces.convert_domain(latent, sp, domain, "taesd") if domain != "taesd" else latent
    out = up(z, (out_hw[0] * p, out_hw[1] * p))
    return spaces.convert_domain(out, sp, "taesd", domain) if domain != "taesd" else out
