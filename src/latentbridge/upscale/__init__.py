"""Latent upscaling: plain resampling for any ratio and domain, and a learned upscaler conditioned on the ratio."""

from .api import LEARNED, METHODS, upscale, upscale_samples
from .learned import LearnedUpscaler, UpscalerConfig, UpscalerNet, load, upscale_learned
from .plain import PLAIN_METHODS, pixel_size, plain_method, resample, resample_latent, target_size

__all__ = ["LEARNED", "METHODS", "PLAIN_METHODS", "LearnedUpscaler", "UpscalerConfig", "UpscalerNet", "load",
           "pixel_size", "plain_method", "resample", "resample_latent", "target_size", "upscale", "upscale_learned",
           "upscale_samples"]
