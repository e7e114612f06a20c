"""Iterative mixing: DemoFusion's skip residual over any k-diffusion-style sampler, with a lazy unsampler.

Upscale a clean latent, noise copies of it to every sigma of the schedule (:class:`Unsampler`), and before each
sampler step blend the latent with the copy at exactly that step's sigma, with a weight that falls from 1 to 0
(:func:`schedule`). Everything works on **model-domain** latents (what samplers see; use
``spaces.convert_domain`` from raw).

* :func:`sample` runs the whole recipe over ``denoiser(x, sigma) -> x0``.
* :func:`sample_mixing` is the same as a k-diffusion sampler function ``(model, x, sigmas, extra_args, callback,
  disable, *, noised, weights, ...)`` for hosts that bring their own model wrapper (ComfyUI's SAMPLER).
* :func:`mixing_hook` is the mixing step alone, ``hook(x, i)``, for hosts that drive their own samplers.
"""

import warnings

from .blending import BLENDS, blend
from .denoiser import Denoiser
from .mixer import cleanup_sigmas, refine, sample
from .presets import PRESETS, Preset, preset
from .process import FLOW, PREDICTIONS, VE, ForwardProcess, check_sigmas, prediction_of, process_for
from .samplers import (
    SAMPLERS,
    MixingHook,
    mixing_hook,
    run_sampler,
    sample_dpmpp_2m,
    sample_euler,
    sample_euler_ancestral,
    sample_mixing,
)
from .schedules import SCHEDULES, schedule
from .unsampler import NoisedBatch, Unsampler

__all__ = [
    "BLENDS",
    "FLOW",
    "PREDICTIONS",
    "PRESETS",
    "SAMPLERS",
    "SCHEDULES",
    "VE",
    "Denoiser",
    "ForwardProcess",
    "MixingHook",
    "NoisedBatch",
    "Preset",
    "Unsampler",
    "blend",
    "check_sigmas",
    "cleanup_sigmas",
    "mixing_hook",
    "prediction_of",
    "preset",
    "process_for",
    "refine",
    "run_sampler",
    "sample",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_mixing",
    "schedule",
]

_RENAMED = {"KINDS": "PREDICTIONS", "kind_of": "prediction_of"}  # deprecated names of eps/v/flow things


def __getattr__(name: str) -> object:
    if name in _RENAMED:
        warnings.warn(f"latentbridge.mixing.{name} is deprecated: use {_RENAMED[name]}", DeprecationWarning, stacklevel=2)
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
