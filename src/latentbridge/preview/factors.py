"""Per-pixel latent -> RGB maps ("preview factors"): linear, affine and quadratic, from the registry or a file.

Factors act on **taesd-domain** latents (FLUX.2 unpacked to 32 channels at /8) and give RGB in [-1, 1], the
convention of every published matrix (rows = latent channels, columns = R, G, B). Factors may also be *packed*:
with ``patch`` p they read each p x p cell as one vector of C*p*p values (channel c*p*p + i*p + j, as
:func:`latentbridge.spaces.pack`) and give its 3*p*p colours (colour k at (i, j) in column k*p*p + i*p + j). A
FLUX.2 latent needs that: its batch-norm statistics differ between the four positions of each 2x2 cell, which no
per-pixel map of the unpacked latent can undo.

A factors file is safetensors with ``<form>.weight`` (F, 3*p*p) and ``<form>.bias`` (3*p*p,) per fitted form and
``latentbridge.*`` metadata naming the space, the channel count and the form to use by default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from .. import spaces, weights
from ..errors import InputError, WeightsFormatError
from ..io import atomic_path
from ..weights import PACKAGE_MODELS

FORMS = ("linear", "affine", "quadratic")
KIND = "preview-factors"


def feature_count(channels: int, form: str) -> int:
    """Rows of the weight matrix of ``form`` for ``channels`` latent channels (the bias is separate)."""
    _check_form(form)
    return channels + channels * (channels + 1) // 2 if form == "quadratic" else channels


def features(latent: torch.Tensor, form: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, F, H, W): the channels, then for ``quadratic`` every product x_i x_j with i <= j."""
    _check_form(form)
    if form != "quadratic":
        return latent
    i, j = torch.triu_indices(latent.shape[1], latent.shape[1], device=latent.device)
    return torch.cat([latent, latent[:, i] * latent[:, j]], 1)


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise InputError(f"unknown factor form {form!r}: use one of {', '.join(FORMS)}")


@dataclass(eq=False)
class Factors:
    """``rgb = features(latent) @ weight + bias`` per pixel (per p x p cell when packed), on taesd-domain latents,
    RGB in [-1, 1]."""

    weight: torch.Tensor  # (F, 3*p*p): rows = features (channels first), columns = R, G, B (per cell position)
    bias: torch.Tensor | None  # (3*p*p,) or None for the plain linear form
    form: str = "affine"
    space: str | None = None
    source: str = ""
    _prepared: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _check_form(self.form)
        cols = self.weight.shape[1] if self.weight.ndim == 2 else 0
        p = round((cols / 3) ** 0.5) if cols else 0
        if self.weight.ndim != 2 or p < 1 or 3 * p * p != cols:
            raise WeightsFormatError(f"preview factors must be an (F, 3) matrix (or (F, 3*p*p) when packed); got "
                                     f"{tuple(self.weight.shape)}")
        if self.bias is not None and self.bias.shape != (cols,):
            raise WeightsFormatError(f"a preview bias must hold {cols} values (R, G, B per cell position); got "
                                     f"{tuple(self.bias.shape)}")
        rows = self.weight.shape[0]
        if not any(feature_count(c * p * p, self.form) == rows for c in range(1, rows + 1)):
            raise WeightsFormatError(f"{rows} rows cannot be {self.form} factors of any channel count")

    @property
    def patch(self) -> int:
        """Cell side p: 1 for per-pixel factors, 2 for factors of 2x2-packed latents."""
        return round((self.weight.shape[1] / 3) ** 0.5)

    @property
    def channels(self) -> int:
        """Latent channels these factors take (taesd domain, unpacked)."""
        rows, pp = self.weight.shape[0], self.patch ** 2
        return next(c for c in range(1, rows + 1) if feature_count(c * pp, self.form) == rows)

    def _matrix(self, like: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(3*p*p, F) weights and (3*p*p, 1) bias mapping straight to [0, 1] (halved, bias + 1 halved), cached per
        device/dtype.

        They take the latent packed by ``patch`` (channel c*p*p + i*p + j) and give 3*p*p values per cell in
        pixel-shuffle order; per-pixel factors are spread over the cell positions, so a packed latent is previewed
        without unpacking it first.
        """
        key = (like.device, like.dtype, patch)
        if key not in self._prepared:
            w = self.weight.detach().to(like.device, torch.float32).t() / 2  # (3*q*q, F) with q = self.patch
            b = self.bias.detach().to(like.device, torch.float32) if self.bias is not None else w.new_zeros(len(w))
            b = b / 2 + 0.5
            if patch > self.patch:
                pp = patch * patch
                eye = torch.eye(pp, device=like.device)
                w = torch.einsum("kc,pq->kpcq", w, eye).reshape(3 * pp, w.shape[1] * pp)
                b = b.repeat_interleave(pp)
            self._prepared[key] = (w.to(like.dtype).contiguous(), b[:, None].to(like.dtype).contiguous())
        return self._prepared[key]

    def rgb(self, latent: torch.Tensor) -> torch.Tensor:
        """taesd-domain (B, C, H, W) -> RGB (B, 3, H, W) in [-1, 1], unclamped."""
        self.check(latent.shape[1])
        p = self.patch
        x = F.pixel_unshuffle(latent, p) if p > 1 else latent
        out = torch.einsum("bfhw,fk->bkhw", features(x, self.form), self.weight.to(latent.device, latent.dtype))
        if self.bias is not None:
            out = out + self.bias.to(latent.device, latent.dtype).view(1, -1, 1, 1)
        return F.pixel_shuffle(out, p) if p > 1 else out

    def preview(self, latent: torch.Tensor, *, patch: int = 1, clamp: bool = True) -> torch.Tensor:
        """(B, C*patch^2, H, W) latent (packed when ``patch`` > 1) -> RGB in [0, 1] at (H*patch, W*patch).

        One matrix product per image and a reshape: this is the hot path of live previews.
        """
        if self.form == "quadratic" or (patch not in (1, self.patch) and self.patch > 1):
            x = spaces.unpack(latent, patch) if patch > 1 else latent
            out = self.rgb(x).add_(1).mul_(0.5)
            return out.clamp_(0, 1) if clamp else out
        self.check(latent.shape[1] // (patch * patch))
        x = F.pixel_unshuffle(latent, self.patch) if self.patch > patch else latent
        p = max(patch, self.patch)
        w, b = self._matrix(x, p)
        n, c, h, wd = x.shape
        out = torch.matmul(w, x.reshape(n, c, h * wd)).add_(b)
        if p > 1:  # pixel shuffle, as one strided copy
            out = out.view(n, 3, p, p, h, wd).permute(0, 1, 4, 2, 5, 3).reshape(n, 3, h * p, wd * p)
        else:
            out = out.view(n, 3, h, wd)
        return out.clamp_(0, 1) if clamp else out

    def check(self, channels: int) -> None:
        if channels != self.channels:
            where = f" ({self.source})" if self.source else ""
            raise InputError(f"the preview factors{where} take {self.channels}-channel latents, not {channels}: "
                             "use factors fitted for this space (latentbridge fit-preview)")

    def to_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"{self.form}.weight": self.weight.detach().float().cpu().contiguous()}
        if self.bias is not None:
            out[f"{self.form}.bias"] = self.bias.detach().float().cpu().contiguous()
        return out


def default_factors(space: str | spaces.LatentSpace) -> Factors:
    """The factors ``preview(method="linear")`` uses: the project's fitted file shipped for ``space``
    (``models/factors-<space>.safetensors``, where it beats the published factors on held-out photos), else the
    registry's."""
    return _default(spaces.get(space).id)


@cache  # package data, fixed for the process: a preview call must not pay a file check (10 us of a 90 us preview)
def _default(space: str) -> Factors:
    shipped = PACKAGE_MODELS / f"factors-{space}.safetensors"
    return load_factors(shipped) if shipped.is_file() else builtin(space)


def builtin(space: str | spaces.LatentSpace) -> Factors:
    """The registry's factors (and bias) for ``space``; an error says how to fit some when it has none."""
    sp = spaces.get(space)
    return _builtin(sp.id) if sp is spaces.get(sp.id) else _from_space(sp)


@cache
def _builtin(space: str) -> Factors:
    return _from_space(spaces.get(space))


def _from_space(sp: spaces.LatentSpace) -> Factors:
    if sp.rgb_factors is None:
        raise InputError(f"{sp.id} has no built-in preview factors: fit some with 'latentbridge fit-preview' and pass "
                         "them with factors=, or use method='tiny' or method='neural'")
    weight = torch.tensor(sp.rgb_factors, dtype=torch.float32)
    bias = torch.tensor(sp.rgb_bias, dtype=torch.float32) if sp.rgb_bias is not None else None
    source = sp.sources.get("rgb_factors", "registry")
    return Factors(weight, bias, "affine" if bias is not None else "linear", sp.id, f"built-in {sp.id}: {source}")


def save_factors(path: str | os.PathLike, fitted: dict[str, Factors], *, space: str, default: str,
                 info: dict | None = None, overwrite: bool = False, dtype: str = "float32") -> Path:
    """Write several fitted forms into one safetensors file (atomically) with their metadata, the matrices kept in
    ``dtype`` (:func:`latentbridge.weights.stored`; they are read back as float32)."""
    if default not in fitted:
        raise InputError(f"default form {default!r} is not among the fitted ones ({', '.join(fitted)})")
    channels = {f.channels for f in fitted.values()}
    if len(channels) != 1:
        raise InputError("all forms in one factors file must take the same channel count")
    tensors: dict[str, torch.Tensor] = {}
    for f in fitted.values():
        tensors.update(f.to_tensors())
    meta = weights.model_metadata(kind=KIND, spaces=[spaces.get(space).id], domains=["taesd"],
                                  config={"channels": channels.pop(), "default_form": default, "forms": list(fitted)},
                                  metrics=info)
    tensors, meta = weights.stored(tensors, meta, dtype)
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_factors(path: str | os.PathLike, *, form: str | None = None) -> Factors:
    """Read one form (default: the file's ``default_form``) from a factors file written by :func:`save_factors`.

    A plain safetensors file with just ``weight`` (C, 3) and optional ``bias`` (3,) is accepted as well. Cached
    while the file is unchanged (:func:`latentbridge.weights.cached`).
    """
    return weights.cached(path, (KIND, form), lambda: _read(Path(path), form))


def _read(path: Path, form: str | None) -> Factors:
    tensors, meta = weights.load_tensors(path)
    info = weights.model_info(meta, source=path)
    space = info.space
    if "weight" in tensors:  # a bare matrix
        bias = tensors.get("bias")
        return Factors(tensors["weight"].float(), bias.float() if bias is not None else None,
                       "affine" if bias is not None else "linear", space, str(path))
    forms = [f for f in FORMS if f"{f}.weight" in tensors]
    if not forms:
        raise WeightsFormatError(f"{path}: not a preview factors file (no 'weight' or '<form>.weight' tensor); "
                                 "write one with 'latentbridge fit-preview'")
    chosen = form or info.config.get("default_form") or meta.get("latentbridge.default_form") or forms[-1]
    if chosen not in forms:
        raise InputError(f"{path} holds the forms {', '.join(forms)}, not {chosen!r}")
    bias = tensors.get(f"{chosen}.bias")
    return Factors(tensors[f"{chosen}.weight"].float(), bias.float() if bias is not None else None, chosen, space,
                   f"{path} ({chosen})")
