"""A TAESD-family autoencoder (either half optional) with explicit latent domains."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import limits, spaces
from ..errors import InputError
from . import arch, run, tiling

FITS = ("error", "pad", "crop")
TILE_ABOVE = 2048 * 2048  # images with more pixels are encoded in tiles (full-resolution activations are large)
TILE_PIXELS = 1024  # the side of such a tile in image pixels


def _check_tile(tile: object) -> None:
    if tile is not None:
        limits.check_whole("tile", tile, unit="latent pixels")


class TinyAutoencoder(nn.Module):
    """Encoder and/or decoder tables plus what the weights say: variant, channels, and the space when known.

    Images are RGB in [0, 1], (B, 3, H, W). Latents are in the ``taesd`` domain unless a call names another domain
    (``raw``/``model``), which needs the model's :attr:`space`. Outputs keep the input's device and dtype.
    """

    def __init__(self, *, variant: str, latent_channels: int, encoder: nn.Sequential | None = None,
                 decoder: nn.Sequential | None = None, space: spaces.LatentSpace | None = None,
                 name: str | None = None) -> None:
        super().__init__()
        if encoder is None and decoder is None:
            raise ValueError("a tiny autoencoder needs an encoder, a decoder or both")
        self.encoder = encoder
        self.decoder = decoder
        self.variant = variant
        self.latent_channels = latent_channels
        self.space = space
        self.name = name

    @property
    def downscale(self) -> int:
        """Image pixels per latent pixel in the taesd domain (8, or 32 for the f32 variant)."""
        return arch.DOWNSCALE[self.variant]

    @property
    def has_encoder(self) -> bool:
        return self.encoder is not None

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, variant={self.variant!r}, latent_channels={self.latent_channels}, "
                f"downscale={self.downscale}, space={self.space.id if self.space else None!r}")

    def encode(self, images: torch.Tensor, *, domain: str = "taesd", fit: str = "error", tile: int | None = None,
               progress: bool = False) -> torch.Tensor:
        """Images in [0, 1] (B, 3, H, W) -> latents in ``domain`` (taesd by default).

        H and W must be whole latent cells of ``domain`` (:attr:`downscale` pixels; FLUX.2's packed raw and model
        domains take 2x2 of them); ``fit="pad"`` pads the bottom/right edges by replication
        (decode and crop to get the original size back), ``fit="crop"`` drops the remainder. ``tile`` (latent
        pixels per tile side) encodes tile by tile with bounded memory, matching the untiled encode up to float
        rounding (see :mod:`.tiling`); images above :data:`TILE_ABOVE` pixels are tiled unless ``tile`` says so.
        """
        if self.encoder is None:
            raise InputError(f"{self._label()} has no encoder: load a file or name that holds one "
                             f"(e.g. '{self._base()}_encoder')")
        _check_tile(tile)
        x = self._fit(self._check_images(images), fit, domain)
        if tile is None and x.shape[-2] * x.shape[-1] > TILE_ABOVE:
            tile = TILE_PIXELS // self.downscale
        if tile is not None and not (x.requires_grad and torch.is_grad_enabled()):
            with torch.no_grad():
                latent = tiling.encode_tiled(self.encoder, x, tile=tile, progress=progress)
        else:
            latent = self._run(self.encoder, x)
        latent = latent.to(device=images.device, dtype=images.dtype)
        return latent if domain == "taesd" else spaces.convert_domain(latent, self._need_space(domain), "taesd", domain)

    def decode(self, latents: torch.Tensor, *, domain: str = "taesd", tile: int | None = None,
               progress: bool = False) -> torch.Tensor:
        """Latents in ``domain`` (taesd by default) -> images in about [0, 1] (B, 3, H, W), not clamped.

        ``tile`` (latent pixels per tile side) decodes tile by tile with bounded memory; the result matches the
        untiled decode up to float rounding (see :mod:`.tiling`).
        """
        if self.decoder is None:
            raise InputError(f"{self._label()} has no decoder: load a file or name that holds one "
                             f"(e.g. '{self._base()}_decoder')")
        _check_tile(tile)
        z = self.to_taesd(latents, domain)
        limits.check_pixels(limits.items(z), z.shape[-2] * self.downscale, z.shape[-1] * self.downscale,
                            what="the decoded images", fix="decode a crop of the latent or fewer batch items at a time")
        x = z.to(device=self.device, dtype=self.dtype)
        if tile is not None and not (x.requires_grad and torch.is_grad_enabled()):
            with torch.no_grad():
                images = tiling.decode_tiled(self.decoder, x, tile=tile, progress=progress)
        else:
            images = self._run(self.decoder, x)
        return images.to(device=latents.device, dtype=latents.dtype)

    def to_taesd(self, latents: torch.Tensor, domain: str = "taesd") -> torch.Tensor:
        """Check ``latents`` against this model and convert them from ``domain`` to the taesd domain."""
        if not isinstance(latents, torch.Tensor) or not spaces.check_tensor(latents, "latents").is_floating_point():
            raise InputError("latents must be a floating-point torch.Tensor (B, C, H, W)")
        limits.check_not_empty(latents)
        if domain != "taesd":
            latents = spaces.convert_domain(latents, self._need_space(domain), domain, "taesd")
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise InputError(f"{self._label()} takes taesd-domain latents of shape (B, {self.latent_channels}, H, W); "
                             f"got {tuple(latents.shape)}"
                             f"{' in the ' + domain + ' domain' if domain != 'taesd' else ''}. Load the tiny "
                             "autoencoder of the latent's space, or say which domain the latent is in")
        return latents

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or not spaces.check_tensor(images, "images").is_floating_point():
            raise InputError("images must be a floating-point torch.Tensor (B, 3, H, W) in [0, 1]; "
                             "convert 8-bit images with .float() / 255")
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"images must have shape (B, 3, H, W); got {tuple(images.shape)} "
                             "(add a batch dimension with .unsqueeze(0), convert grey/RGBA images to RGB)")
        limits.check_not_empty(images, "the image batch")
        lo, hi = (float(v) for v in torch.aminmax(images.detach()))  # NaN propagates into both
        if not (-0.5 <= lo and hi <= 1.5):  # 8-bit levels or [-1, 1] pictures would encode to garbage silently
            fix = ("they hold NaN or infinite values" if not (math.isfinite(lo) and math.isfinite(hi)) else
                   "convert 8-bit levels with / 255" if hi > 1.5 else "map [-1, 1] pictures with (x + 1) / 2")
            raise InputError(f"images must hold values in [0, 1]; these span [{lo:.3g}, {hi:.3g}]: {fix}")
        return images.to(device=self.device, dtype=self.dtype)

    def _fit(self, x: torch.Tensor, fit: str, domain: str = "taesd") -> torch.Tensor:
        """Images cropped or edge-padded to whole latent cells of ``domain`` (``fit="error"``: other sizes refused)."""
        if fit not in FITS:
            raise InputError(f"unknown fit {fit!r}: use one of {', '.join(FITS)}")
        d = self._need_space(domain).downscale_in(domain) if domain != "taesd" else self.downscale
        h, w = x.shape[-2:]
        if h % d == 0 and w % d == 0:
            return x
        if fit == "pad":
            return F.pad(x, (0, -w % d, 0, -h % d), mode="replicate")
        if fit == "crop":
            if h < d or w < d:
                raise InputError(f"a {h}x{w} image is smaller than one latent pixel ({d}x{d}); use fit='pad'")
            return x[..., : h - h % d, : w - w % d]
        raise InputError(f"image size {h}x{w} is not a multiple of {d} ({self._label()} works in {d}x{d} cells): "
                         f"resize it, or pass fit='pad' (replicate edges to {h + -h % d}x{w + -w % d}) "
                         f"or fit='crop' ({h - h % d}x{w - w % d})")

    def _need_space(self, domain: str) -> spaces.LatentSpace:
        spaces.check_domain(domain)
        if self.space is None:
            raise InputError(f"{self._label()} does not know its latent space, so it cannot convert to or from the "
                             f"{domain} domain: load it with space=... (e.g. tiny.load(path, space='sdxl'))")
        return self.space

    @staticmethod
    def _run(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """The one place that picks the path: the readable module table when a gradient is wanted, else the fast
        inference pass :func:`.run.forward` over the same table (equal within float rounding: tests/tiny/test_run.py)."""
        if x.requires_grad and torch.is_grad_enabled():
            return seq(x)  # the plain modules, so gradients reach the input
        with torch.no_grad():
            return run.forward(seq, x)

    def _label(self) -> str:
        return f"tiny autoencoder {self.name!r}" if self.name else f"this {self.variant} tiny autoencoder"

    def _base(self) -> str:
        """The model's name without its half, else the space's tiny autoencoder (never another space's file)."""
        if self.name:
            return self.name.removesuffix("_encoder").removesuffix("_decoder")
        return (self.space.tiny if self.space is not None else None) or "taesd"
