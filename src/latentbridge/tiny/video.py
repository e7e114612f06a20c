"""Tiny video autoencoders (TAEHV family, TAESDV): clips (B, 3, F, H, W) to latents (B, C, T, h, w) and back.

A clip of F frames encodes to ceil(F / time_downscale) latent frames (the last frame repeats to fill the last
group, as upstream's ``taehv.py`` does); T latent frames decode to ``1 + time_upscale * (T - 1)`` frames (the
first ``time_upscale - 1`` decoded frames only warm the causal decoder up and are dropped), so 1 + 4k frames round
trip exactly through the x4 models. Decoding streams: ``chunk=N`` runs N latent frames at a time with the state
carried over and gives the same frames as one pass. :meth:`TinyVideoAutoencoder.preview` is upstream's cheap
preview: one frame per latent frame, without the decoder's upsampling.

Which space a file serves (docs/taehv.md): the keys tell the 48-channel (Wan 2.2), 32-channel (HunyuanVideo
1.5), 128-channel (LTX-2) and TAESDV (SD 1.x) files apart; the 16-channel files of HunyuanVideo, Wan 2.1 and
CogVideoX share their keys, so their space comes from ``space=``, the published name, or the file's metadata.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import limits, spaces
from ..errors import AmbiguousError, InputError, WeightsFormatError
from . import stream, taehv
from .model import TinyAutoencoder

UPSTREAM = "https://github.com/madebyollin/taehv"
# Published names and the spaces they serve are registry data (spaces.py, video TinyModels); only what the
# registry cannot say is here.
_UNREGISTERED = ("taeos1_3",)  # published files whose space (Open-Sora 1.3) the registry does not hold
_KEEP_EVEN = ("taecvx",)  # clips with an even number of latent frames keep every decoded frame
NAMES = spaces.tiny_names(video=True) + _UNREGISTERED  # the names known at import, for listings


def is_published(name: str) -> bool:
    """Whether ``name`` (case ignored) is a published tiny video autoencoder."""
    found = spaces.tiny_model(name)
    return bool(found and found[0].video) or name.lower() in _UNREGISTERED


def _served(name: str) -> spaces.LatentSpace | None:
    found = spaces.tiny_model(name)
    return found[1] if found else None


_VARIANTS = {"base": "taehv", "super": "taehv_super", "wide": "taehv_wide", "taesdv": "taesdv"}


class TinyVideoAutoencoder(TinyAutoencoder):
    """Encoder and/or decoder of a tiny video autoencoder, with its :class:`~.taehv.VideoLayout` and space.

    Clips are RGB in [0, 1], (B, 3, F, H, W); latents (B, C, T, h, w), in the ``taesd`` domain unless a call names
    another (which needs :attr:`space`). Outputs keep the input's device and dtype; decoded frames are clamped to
    [0, 1] as upstream clamps them.
    """

    def __init__(self, *, layout: taehv.VideoLayout, encoder: nn.Sequential | None = None,
                 decoder: nn.Sequential | None = None, space: spaces.LatentSpace | None = None,
                 name: str | None = None, keep_even: bool = False) -> None:
        super().__init__(variant=_VARIANTS[layout.decoder], latent_channels=layout.latent_channels,
                         encoder=encoder, decoder=decoder, space=space, name=name)
        self.layout = layout
        self.keep_even = keep_even

    @property
    def downscale(self) -> int:
        """Frame pixels per latent pixel."""
        return self.layout.downscale

    @property
    def time_downscale(self) -> int:
        """Clip frames per latent frame when encoding."""
        return self.layout.time_downscale

    @property
    def time_upscale(self) -> int:
        """Decoded frames per latent frame (before the warm-up frames are dropped)."""
        return self.layout.time_upscale

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, patch={self.layout.patch}, time_downscale={self.time_downscale}, "
                f"time_upscale={self.time_upscale}")

    def decoded_frames(self, latent_frames: int, *, preview: bool = False) -> int:
        """Frames that ``latent_frames`` decode to (one each for a preview)."""
        return latent_frames if preview else latent_frames * self.time_upscale - self._warmup(latent_frames)

    def encode(self, frames: torch.Tensor, *, domain: str = "taesd", fit: str = "error",  # type: ignore[override]
               chunk: int | None = None) -> torch.Tensor:
        """Clip in [0, 1] (B, 3, F, H, W) -> latents (B, C, ceil(F / time_downscale), H / d, W / d) in ``domain``.

        ``fit`` as for images (H and W multiples of :attr:`downscale`); ``chunk`` encodes that many latent frames'
        worth of input at a time (same result, memory bounded by the chunk).
        """
        if self.encoder is None:
            raise InputError(f"{self._label()} has no encoder: load a file that holds one")
        x = self._fit(self._check_frames(frames), fit, domain)
        group = self.time_downscale
        if x.shape[2] % group:
            x = torch.cat([x, x[:, :, -1:].expand(-1, -1, group - x.shape[2] % group, -1, -1)], 2)
        step = x.shape[2] if chunk is None else _positive(chunk) * group
        memory = stream.Memory()
        pieces = [_clip(stream.forward(self.encoder, _frames(x[:, :, i:i + step], self.layout.patch), x.shape[0],
                                       memory), x.shape[0]) for i in range(0, x.shape[2], step)]
        latent = torch.cat(pieces, 2).to(device=frames.device, dtype=frames.dtype)
        return latent if domain == "taesd" else self._convert(latent, "taesd", domain)

    def decode(self, latents: torch.Tensor, *, domain: str = "taesd",  # type: ignore[override]
               chunk: int | None = None) -> torch.Tensor:
        """Latents (B, C, T, h, w) in ``domain`` -> frames in [0, 1] (B, 3, :meth:`decoded_frames`, h*d, w*d).

        ``chunk`` decodes that many latent frames at a time with the decoder's state carried across: the same
        frames as one pass, with the working memory of a chunk instead of the clip's.
        """
        return self._collect(latents, domain, chunk, preview=False)

    def preview(self, latents: torch.Tensor, *, domain: str = "taesd", chunk: int | None = None) -> torch.Tensor:
        """A cheaper decode: one frame per latent frame and no nearest upsampling (the ``_super`` decoders, whose
        upsampling is learned, keep it): (B, 3, T, h * patch, w * patch) for the base decoders."""
        return self._collect(latents, domain, chunk, preview=True)

    def stream(self, latents: torch.Tensor, *, domain: str = "taesd", chunk: int = 1,
               preview: bool = False) -> Iterator[torch.Tensor]:
        """Decoded frames (B, 3, f, H, W) as they come, ``chunk`` latent frames at a time; concatenated along time
        they are :meth:`decode` (or :meth:`preview`)'s frames. Only one chunk's activations live at a time."""
        if self.decoder is None:
            raise InputError(f"{self._label()} has no decoder: load a file that holds one")
        z = self.to_taesd(latents, domain).to(device=self.device, dtype=self.dtype)
        return self._stream(z, _positive(chunk), preview, latents.device, latents.dtype)

    def to_taesd(self, latents: torch.Tensor, domain: str = "taesd") -> torch.Tensor:
        """Check ``latents`` (B, C, T, h, w) against this model and convert them from ``domain`` to taesd."""
        if not isinstance(latents, torch.Tensor) or not spaces.check_tensor(latents, "latents").is_floating_point():
            raise InputError("latents must be a floating-point torch.Tensor (B, C, T, H, W)")
        if latents.ndim != 5:
            raise InputError(f"{self._label()} takes video latents (B, C, T, H, W); got {tuple(latents.shape)}"
                             + (" (add a time axis with .unsqueeze(2) for one frame)" if latents.ndim == 4 else ""))
        if 0 in latents.shape:
            raise InputError(f"the latents {tuple(latents.shape)} are empty: nothing to decode")
        if domain != "taesd":
            latents = self._convert(latents, domain, "taesd")
        if latents.shape[1] != self.latent_channels:
            raise InputError(f"{self._label()} takes taesd-domain latents with {self.latent_channels} channels; got "
                             f"{tuple(latents.shape)}. Load the tiny autoencoder of the latent's space")
        return latents

    def _stream(self, z: torch.Tensor, chunk: int, preview: bool, device: torch.device,
                dtype: torch.dtype) -> Iterator[torch.Tensor]:
        batch, frames = z.shape[0], z.shape[2]
        drop = 0 if preview else self._warmup(frames)
        memory = stream.Memory()
        for start in range(0, frames, chunk):
            y = stream.forward(self.decoder, _frames(z[:, :, start:start + chunk], 1), batch, memory, preview=preview)
            y = y.reshape(batch, -1, *y.shape[1:])
            if self.layout.patch > 1:
                y = F.pixel_shuffle(y, self.layout.patch)
            y = y.clamp(0, 1).transpose(1, 2)
            cut = min(drop, y.shape[2])
            drop -= cut
            if y.shape[2] > cut:
                yield y[:, :, cut:].to(device=device, dtype=dtype)

    def _collect(self, latents: torch.Tensor, domain: str, chunk: int | None, preview: bool) -> torch.Tensor:
        whole = max(1, latents.shape[2]) if isinstance(latents, torch.Tensor) and latents.ndim == 5 else 1
        pieces = self.stream(latents, domain=domain, chunk=whole if chunk is None else chunk, preview=preview)
        scale = self.layout.patch if preview and self.layout.decoder != "super" else self.downscale
        limits.check_pixels(latents.shape[0] * self.decoded_frames(latents.shape[2], preview=preview),
                            latents.shape[-2] * scale, latents.shape[-1] * scale, what="the decoded clip",
                            fix="decode fewer latent frames or a crop of them, or take the frames from stream()")
        first = next(pieces)
        b, c, _, h, w = first.shape
        out = first.new_empty(b, c, self.decoded_frames(latents.shape[2], preview=preview), h, w)
        at = 0
        for piece in itertools.chain([first], pieces):
            out[:, :, at:at + piece.shape[2]] = piece
            at += piece.shape[2]
        return out

    def _warmup(self, latent_frames: int) -> int:
        """Decoded frames dropped at the start: all but the last of the first latent's (none for taecvx's even T)."""
        return 0 if self.keep_even and latent_frames % 2 == 0 else self.time_upscale - 1

    def _check_frames(self, frames: torch.Tensor) -> torch.Tensor:
        if not isinstance(frames, torch.Tensor) or not spaces.check_tensor(frames, "frames").is_floating_point():
            raise InputError("frames must be a floating-point torch.Tensor (B, 3, F, H, W) in [0, 1]; convert 8-bit "
                             "frames with .float() / 255")
        if frames.ndim != 5 or frames.shape[1] != 3 or 0 in frames.shape:
            raise InputError(f"a clip must have shape (B, 3, F, H, W), none of them 0; got {tuple(frames.shape)}"
                             + (" (one image: add a time axis with .unsqueeze(2))" if frames.ndim == 4 else ""))
        return frames.to(device=self.device, dtype=self.dtype)

    def _fit(self, x: torch.Tensor, fit: str, domain: str = "taesd") -> torch.Tensor:
        """Images' ``fit`` applied to every frame."""
        b, c, t, h, w = x.shape
        flat = super()._fit(x.transpose(1, 2).reshape(b * t, c, h, w), fit, domain)
        return flat.reshape(b, t, c, *flat.shape[-2:]).transpose(1, 2)

    def _convert(self, latents: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        """Domain conversion of a clip; an image space (TAESDV's sd1) converts frame by frame."""
        space = self._need_space(src if src != "taesd" else dst)
        if space.ndim == 5:
            return spaces.convert_domain(latents, space, src, dst)
        b, c, t, h, w = latents.shape
        flat = spaces.convert_domain(latents.transpose(1, 2).reshape(b * t, c, h, w), space, src, dst)
        return flat.reshape(b, t, *flat.shape[1:]).transpose(1, 2)


def _positive(chunk: int) -> int:
    return limits.check_whole("chunk", chunk, unit="latent frames")


def _frames(clip: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B * T, C * patch^2, H / patch, W / patch), batch-major, pixel-unshuffled."""
    x = clip.transpose(1, 2)
    if patch > 1:
        x = F.pixel_unshuffle(x, patch)
    return x.reshape(-1, *x.shape[2:])


def _clip(frames: torch.Tensor, batch: int) -> torch.Tensor:
    """(B * T, C, H, W) -> (B, C, T, H, W)."""
    return frames.reshape(batch, -1, *frames.shape[1:]).transpose(1, 2)


def published_name(label: str, path: str | os.PathLike | None = None) -> str | None:
    """The published name a model was asked for (``"taew2_1"``) or a file is named after (``taew2_1.pth``)."""
    for candidate in (label, Path(path).stem if path is not None else None):
        if candidate is not None and is_published(candidate):
            return candidate.lower()
    return None


def build(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], *, label: str,
          path: str | os.PathLike | None, space: spaces.LatentSpace | None,
          prepare: Callable[[torch.Tensor], torch.Tensor]) -> TinyVideoAutoencoder:
    """A frozen video autoencoder from a TAEHV-family or TAESDV state dict (``prepare`` moves each tensor)."""
    enc, dec = taehv.split(tensors)
    try:
        layout = taehv.identify(enc, dec)
    except KeyError as e:
        raise WeightsFormatError(f"{label} looks like a TAEHV-family video autoencoder but has no key {e.args[0]}; "
                                 "the file is damaged or is a different model") from None
    if (layout.latent_channels, layout.patch) == (24, 2):
        raise WeightsFormatError(f"{label} is a MiniMax-H3 tiny autoencoder (taeh3): its 17-frame chunked encode "
                                 "and decode are not supported yet")
    nets: dict[str, nn.Sequential] = {}
    for role, state in (("encoder", enc), ("decoder", dec)):
        if not state:
            continue
        try:
            fitted = taehv.fit_state(layout, role, state)
        except ValueError as e:
            raise WeightsFormatError(f"{label}: the {role} looks like a {_VARIANTS[layout.decoder]} {role} with "
                                     f"{layout.latent_channels} latent channels but does not fit it: {e}. The file "
                                     "is damaged or is a different model") from None
        if not all(v.is_floating_point() for v in fitted.values()):
            raise WeightsFormatError(f"{label}: the {role} holds non-float tensors; it is not a weight file")
        with torch.device("meta"):
            net = (taehv.encoder if role == "encoder" else taehv.decoder)(layout)
        net.load_state_dict({k: prepare(v) for k, v in fitted.items()}, strict=True, assign=True)
        nets[role] = net
    name = published_name(label, path)
    found = space or _space(layout, name, metadata, label)
    if found is not None and (found.taesd_channels != layout.latent_channels
                              or found.temporal_downscale != layout.time_downscale):
        raise WeightsFormatError(f"{label}: a {layout.latent_channels}-channel, x{layout.time_downscale} in time "
                                 f"video autoencoder cannot serve {found.id} ({found.taesd_channels} channels, "
                                 f"x{found.temporal_downscale} in time)")
    keep_even = name in _KEEP_EVEN if name else found is not None and any(_served(n) is found for n in _KEEP_EVEN)
    model = TinyVideoAutoencoder(layout=layout, encoder=nets.get("encoder"), decoder=nets.get("decoder"),
                                 space=found, name=name, keep_even=keep_even)
    return model.eval().requires_grad_(False)


def _space(layout: taehv.VideoLayout, name: str | None, metadata: Mapping[str, str],
           label: str) -> spaces.LatentSpace | None:
    """The space from the published name, the file's metadata, or the keys where only one registered space with a
    tiny video autoencoder has their channels and downscale."""
    if name is not None:
        return _served(name)
    stated = metadata.get("latentbridge.space") or metadata.get("space")
    if stated:
        return spaces.get(stated)
    fits = [s for s in spaces.all() if any(m.video for m in s.tiny_models)
            and (s.taesd_channels, s.taesd_downscale) == (layout.latent_channels, layout.downscale)]
    if len(fits) == 1:
        return fits[0]
    shared = [f"{m.name} ({s.id})" for s in fits for m in s.tiny_models if m.video] + list(_UNREGISTERED)
    raise AmbiguousError(f"{label}: a {layout.latent_channels}-channel TAEHV file's keys are shared by "
                         f"{', '.join(shared)}; say which space it serves with space= (e.g. space='wan21') or keep its "
                         "published name (e.g. taew2_1.pth)")
