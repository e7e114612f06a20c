"""Closed-form ridge least squares for preview factors: latent pixels -> the image averaged over each latent cell."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from .. import limits, spaces
from ..errors import InputError
from ..metrics import psnr
from .factors import FORMS, Factors, feature_count, features

DEFAULT_RIDGE = 1e-5  # times the mean feature energy; tames collinear channels without biasing real fits


def area_target(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] averaged over each cell of a ``size`` grid: the preview a latent should give."""
    return F.adaptive_avg_pool2d(images.float(), size)


class NormalEquations:
    """Running sums XᵀX and XᵀY (float64) of one feature form, so any number of images fits in bounded memory."""

    def __init__(self, channels: int, form: str, *, bias: bool, outputs: int = 3):
        self.form, self.bias, self.channels = form, bias, channels
        n = feature_count(channels, form) + int(bias)
        self.xtx = torch.zeros(n, n, dtype=torch.float64)
        self.xty = torch.zeros(n, outputs, dtype=torch.float64)
        self.count = 0

    def add(self, latent: torch.Tensor, target: torch.Tensor) -> None:
        """Add pixels: ``latent`` (B, C, h, w), ``target`` (B, outputs, h, w) in [-1, 1]."""
        x = features(latent.double(), self.form).permute(0, 2, 3, 1).reshape(-1, feature_count(self.channels, self.form))
        if self.bias:
            x = torch.cat([x, x.new_ones(len(x), 1)], 1)
        y = target.double().permute(0, 2, 3, 1).reshape(-1, self.xty.shape[1])
        self.xtx += (x.t() @ x).cpu()
        self.xty += (x.t() @ y).cpu()
        self.count += len(x)

    def solve(self, ridge: float = DEFAULT_RIDGE) -> Factors:
        """Ridge solution (XᵀX + λI)⁻¹XᵀY with λ = ``ridge`` x the mean diagonal; the bias is not penalised."""
        if self.count == 0:
            raise InputError("no pixels to fit preview factors on")
        n = self.xtx.shape[0] - int(self.bias)
        reg = torch.zeros(self.xtx.shape[0], dtype=torch.float64)
        reg[:n] = ridge * float(self.xtx.diagonal()[:n].mean())
        w = torch.linalg.lstsq(self.xtx + torch.diag(reg), self.xty).solution
        weight, bias = (w[:n], w[n]) if self.bias else (w, None)
        return Factors(weight.float(), bias.float() if bias is not None else None, self.form)


def check_options(*, ridge: float = DEFAULT_RIDGE, patch: int = 1) -> None:
    """Refuse a ridge that is negative or not finite, or a patch below 1 (before any image is encoded)."""
    if not (isinstance(ridge, (int, float)) and math.isfinite(ridge) and ridge >= 0):
        raise InputError(f"ridge={ridge!r} is not a finite number >= 0 (the default is {DEFAULT_RIDGE:g})")
    limits.check_whole("patch", patch)


def fit_factors(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], *, forms: Sequence[str] = FORMS,
                ridge: float = DEFAULT_RIDGE, space: str | None = None, patch: int = 1) -> dict[str, Factors]:
    """Fit every form in ``forms`` from (latent, image) pairs in one pass.

    ``latent``: (B, C, h, w) **taesd domain**; ``image``: (B, 3, H, W) in [0, 1] of the same content. The target of
    each latent pixel is the image averaged over its cell, mapped to [-1, 1] as published factors expect.
    ``linear`` has no bias, ``affine`` and ``quadratic`` do. ``patch`` > 1 fits packed factors (one map per
    ``patch`` x ``patch`` cell, see :mod:`latentbridge.preview.factors`); the quadratic form, whose size grows
    with the square of the channels, is always fitted per pixel.
    """
    for form in forms:
        if form not in FORMS:
            raise InputError(f"unknown factor form {form!r}: use one of {', '.join(FORMS)}")
    check_options(ridge=ridge, patch=patch)
    space = spaces.get(space).id if space is not None else None
    if not isinstance(pairs, Iterable) or isinstance(pairs, torch.Tensor | str):
        raise InputError(f"pairs= is an iterable of (latent, image) tensor pairs; got {type(pairs).__name__}")
    sums: dict[str, NormalEquations] = {}
    for item in pairs:
        latent, image = _checked_pair(item)
        if latent.ndim != 4 or image.ndim != 4 or latent.shape[0] != image.shape[0] or image.shape[1] != 3:
            raise InputError(f"fit pairs need latents (B, C, h, w) and images (B, 3, H, W) of the same batch; got "
                             f"{tuple(latent.shape)} and {tuple(image.shape)}")
        limits.check_not_empty(latent)
        limits.check_not_empty(image, "the image")
        target = area_target(image, latent.shape[-2:]) * 2 - 1
        if patch > 1 and (latent.shape[-2] % patch or latent.shape[-1] % patch):
            raise InputError(f"packed factors need latents whose sides are multiples of {patch}; got "
                             f"{tuple(latent.shape[-2:])}")
        for form in forms:
            p = 1 if form == "quadratic" else patch
            x, y = (F.pixel_unshuffle(latent, p), F.pixel_unshuffle(target, p)) if p > 1 else (latent, target)
            if form not in sums:
                sums[form] = NormalEquations(x.shape[1], form, bias=form != "linear", outputs=y.shape[1])
            sums[form].add(x, y)
    if not sums:
        raise InputError("no (latent, image) pairs to fit preview factors on")
    fitted = {}
    for form, eq in sums.items():
        f = eq.solve(ridge)
        f.space, f.source = space, f"fitted ({form}, {eq.count} pixels, ridge {ridge:g})"
        fitted[form] = f
    return fitted


def _checked_pair(item: object) -> tuple[torch.Tensor, torch.Tensor]:
    """One (latent, image) pair of real floating-point tensors with finite values: a NaN or an integer tensor would
    otherwise fail deep inside the solver, or fit nonsense."""
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise InputError(f"pairs= holds (latent, image) pairs; got {type(item).__name__}"
                         f"{f' of {len(item)}' if isinstance(item, tuple | list) else ''}")
    for t, what in zip(item, ("latent", "image"), strict=True):
        if not spaces.check_tensor(t, what).is_floating_point() or not bool(torch.isfinite(t).all()):
            raise InputError(f"the {what} of a fit pair must be floating point with finite values; got {t.dtype}"
                             f"{'' if not t.is_floating_point() else ' with NaN or infinite values'}")
    return item[0], item[1]


def factors_psnr(factors: Factors, latent: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of the clamped preview of a taesd-domain ``latent`` against ``image`` averaged to its grid."""
    pred = factors.rgb(latent.float()).clamp(-1, 1).add(1).div(2)
    return psnr(pred, area_target(image, latent.shape[-2:]))


def score_factors(candidates: dict[str, Factors], pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-image PSNR (dB) of each candidate on (taesd-domain latent, image) pairs, one tensor per candidate."""
    return {name: torch.cat([factors_psnr(f, latent, image) for latent, image in pairs])
            for name, f in candidates.items()}


def best_form(scores: dict[str, torch.Tensor | float], forms: Iterable[str]) -> str:
    """The form among ``forms`` with the best mean score: the one a factors file names as its default."""
    return max(forms, key=lambda form: float(torch.as_tensor(scores.get(form, float("-inf"))).float().mean()))
