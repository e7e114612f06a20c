"""The latent-resolution neural previewer: a few small convolutions from a taesd-domain latent to RGB.

An affine 1x1 path (initialised from least-squares factors) carries the colours; a small convolutional body with a
5x5 (or wider) receptive field adds what a per-pixel map cannot see. Output is RGB in [0, 1] at the latent's
resolution, or ``scale`` times it through a pixel shuffle. Files are safetensors whose metadata names the space and
the architecture, so a file is never matched by its name alone.

A space may have several previewers of different ``scale``, its preview ladder (``LatentSpace.preview_rungs`` in
the registry; FLUX.2: /8 and /4): :func:`pick` chooses the installed rung nearest a wanted size (docs/previews.md).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import spaces, weights
from ..errors import WeightsFormatError, WeightsNotFoundError

KIND = "previewer"
ARCH = "latentbridge-previewer-v1"


@dataclass(frozen=True)
class PreviewerConfig:
    channels: int  # taesd-domain latent channels
    width: int = 32  # hidden channels
    blocks: int = 2  # kernel x kernel convolutions in the body
    kernel: int = 3  # spatial size of the body's convolutions (receptive field 1 + blocks * (kernel - 1))
    scale: int = 1  # output pixels per latent pixel along each side (1 = latent resolution)
    patch: int = 1  # latent pixels packed into one cell before the net (2 for FLUX.2: its normalisation is per 2x2 phase)
    context: int = 0  # GroupNorm branches (after the first layer, then after each block): whole-image statistics


class Previewer(nn.Module):
    """taesd-domain latent (B, C, h, w) -> RGB (B, 3, scale*h, scale*w), nominally in [0, 1] (clamp to show)."""

    def __init__(self, config: PreviewerConfig):
        super().__init__()
        self.config = config
        c, w, k = config.channels * config.patch ** 2, config.width, config.kernel
        out = 3 * (config.scale * config.patch) ** 2
        self.linear = nn.Conv2d(c, out, 1)
        layers: list[nn.Module] = [nn.Conv2d(c, w, 1), nn.ReLU()]
        if config.context:
            layers.append(Context(w))
        for i in range(config.blocks):
            layers += [nn.Conv2d(w, w, k, padding=k // 2, padding_mode="replicate"), nn.ReLU()]
            if i + 1 < config.context:
                layers.append(Context(w))
        layers.append(nn.Conv2d(w, out, 1))
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)  # start as the affine map; the body learns the residual
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, latent: torch.Tensor, *, packed: bool = False) -> torch.Tensor:
        """``latent`` in the taesd domain, or already packed into cells of ``patch`` when ``packed``."""
        p, up = self.config.patch, self.config.patch * self.config.scale
        if not packed and p > 1:
            latent = F.pixel_unshuffle(latent, p)  # channel c*p*p + i*p + j, as spaces.pack
        x = torch.tanh(latent / 4) * 4  # keep wild sampler outputs in the range the body was trained on
        y = self.linear(latent) + self.body(x)
        return F.pixel_shuffle(y, up) if up > 1 else y

    def init_affine(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Set the affine path from factors that map to [-1, 1]: weight (C*p*p, 3*p*p) and bias (3*p*p,) on the
        packed latent (plain (C, 3) and (3,) when ``patch`` is 1); each output is repeated ``scale`` x ``scale``."""
        p, s = self.config.patch, self.config.scale
        ps = p * s
        # output channel k*(ps)^2 + I*ps + J comes from factor column k*p^2 + (I//s)*p + (J//s)
        src = [k * p * p + (i // s) * p + (j // s) for k in range(3) for i in range(ps) for j in range(ps)]
        with torch.no_grad():
            w = weight.t()[src] / 2
            b = (bias if bias is not None else weight.new_zeros(weight.shape[1]))[src] / 2 + 0.5
            self.linear.weight.copy_(w[:, :, None, None])
            self.linear.bias.copy_(b)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class Context(nn.Module):
    """x + f(x) where f normalises over the whole image (GroupNorm): global statistics reach every pixel."""

    def __init__(self, width: int):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(width, width, 1, bias=False), nn.GroupNorm(4, width), nn.ReLU(),
                               nn.Conv2d(width, width, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


def metadata(config: PreviewerConfig, space: str, extra: dict | None = None) -> dict[str, str]:
    """The safetensors metadata that makes a previewer file self-describing (the one model-file schema)."""
    return weights.model_metadata(kind=KIND, spaces=[spaces.get(space).id], domains=["taesd"], arch=ARCH,
                                  config=asdict(config), extra=extra)


def file_name(space: str | spaces.LatentSpace, scale: int = 1) -> str:
    """The file a space's previewer of ``scale`` is found by: its rung's name in the registry's ladder plus
    ``.safetensors`` (``previewer-flux2-x2.safetensors``); a scale the ladder lacks is ``previewer-<space>-x<scale>``."""
    sp = spaces.get(space)
    rung = next((r for r in sp.preview_rungs if r.scale == scale), None)
    return f"{rung.name if rung is not None else f'previewer-{sp.id}-x{scale}'}.safetensors"


def find(space: str | spaces.LatentSpace, path: str | os.PathLike | None = None, *, scale: int = 1) -> Path:
    """The previewer file for ``space``: ``path`` if given, else the rung of ``scale``: the shipped file, else the
    user's model folders."""
    if path is not None:  # the file the caller named, never the standard one in its place
        return weights.resolve(path, folder="vae_approx")
    name = file_name(space, scale)
    stem = name.removesuffix(".safetensors")
    try:
        return weights.resolve(stem, filenames=[name], models_dir=weights.PACKAGE_MODELS, allow_download=False)
    except FileNotFoundError:
        return weights.resolve(stem, filenames=[name], folder="vae_approx", allow_download=False)


def ladder(space: str | spaces.LatentSpace, longer: int, want: int | None = None, *,
           finest: int | None = None) -> list[spaces.PreviewRung]:
    """The space's rungs in the order they are tried for a taesd-domain latent whose longer side is ``longer``:
    the nearest output (longer sides, in pixels) to ``want`` first, ties to the smaller and cheaper one; without
    ``want``, coarsest first (latent resolution for every space today). ``finest`` leaves out rungs of a larger
    scale (a caller's cost cap)."""
    rungs = [r for r in spaces.get(space).preview_rungs if finest is None or r.scale <= finest]
    if want is None:
        return list(rungs)
    return sorted(rungs, key=lambda r: (abs(longer * r.scale - want), r.scale))


def pick(space: str | spaces.LatentSpace, longer: int, want: int | None = None, *,
         finest: int | None = None) -> tuple[spaces.PreviewRung, Path]:
    """The first rung of :func:`ladder` whose file is found, and that file: a missing rung falls back to the next;
    :class:`WeightsNotFoundError` only when no rung (of at most ``finest``) has a file."""
    sp = spaces.get(space)
    tried = ladder(sp, longer, want, finest=finest)
    missing: list[WeightsNotFoundError] = []
    for rung in tried:
        try:
            return rung, find(sp, scale=rung.scale)
        except WeightsNotFoundError as e:
            missing.append(e)
    if len(missing) == 1:
        raise missing[0]
    names = [file_name(sp, r.scale) for r in sorted(tried, key=lambda r: r.scale)]
    raise WeightsNotFoundError(f"no neural previewer for {sp.id} is installed ({' or '.join(names)}): "
                               + "; ".join(map(str, missing)), filenames=names, folder="vae_approx")


def load(space: str | spaces.LatentSpace, path: str | os.PathLike | None = None, *, scale: int = 1,
         device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Previewer:
    """Load the neural previewer for ``space`` (cached per file, device and dtype), in eval mode: the file ``path``,
    else the space's rung of ``scale``, whose file must say that scale."""
    found = find(space, path, scale=scale)
    model, info = weights.load_model(found, kind=KIND, build=_build, device=device, dtype=dtype)
    if info.space != spaces.get(space).id:
        raise WeightsFormatError(f"{found} is a previewer for {info.space}, not {spaces.get(space).id}")
    if path is None and model.config.scale != scale:
        raise WeightsFormatError(f"{found} is a previewer of scale {model.config.scale}, but {spaces.get(space).id}'s "
                                 f"ladder names it for scale {scale}: retrain or rename it")
    return model  # type: ignore[return-value]


def _build(info: weights.ModelInfo) -> Previewer:
    if info.arch != ARCH:
        raise WeightsFormatError(f"not a {ARCH} previewer (arch {info.arch!r})")
    try:
        return Previewer(PreviewerConfig(**info.config))
    except TypeError as e:
        raise WeightsFormatError(f"unreadable previewer config in the file's metadata ({e})") from None
