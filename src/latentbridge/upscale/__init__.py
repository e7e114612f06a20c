"""Latent upscaling: plain resampling for any ratio and domain, and a learned upscaler conditioned on the ratio."""

import functools
import warnings

from .api import LEARNED, METHODS, upscale, upscale_samples
from .learned import LearnedUpscaler, UpscalerConfig, UpscalerNet, load, upscale_learned
from .plain import PLAIN_METHODS, pixel_size, plain_method, resample, target_size

__all__ = ["LEARNED", "METHODS", "PLAIN_METHODS", "LearnedUpscaler", "UpscalerConfig", "UpscalerNet", "load",
           "pixel_size", "plain_method", "resample", "target_size", "upscale", "upscale_learned", "upscale_samples"]


def __getattr__(name: str) -> object:
    """``resample_latent`` is the deprecated name of :func:`upscale` with a plain method (bicubic by default)."""
    if name == "resample_latent":
        warnings.warn("latentbridge.upscale.resample_latent is deprecated: use upscale(..., method='bicubic')",
                      DeprecationWarning, stacklevel=2)
        return functools.partial(upscale, method="bicubic")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
