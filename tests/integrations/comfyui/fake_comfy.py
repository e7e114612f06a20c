"""A small stand-in for the parts of ComfyUI 0.8 the mixing nodes call, so their logic is tested without ComfyUI.

It keeps the behaviour that matters (comfy/samplers.py, comfy/model_sampling.py, comfy/sample.py): a ModelPatcher
with ``get_model_object``, EPS/CONST ``noise_scaling``, ``process_latent_in`` skipped for an all-zero latent,
``KSAMPLER`` calling ``sampler_function(model_k, noise_scaling(sigma_0, noise, latent), sigmas, extra_args, ...)``
with a ``KSamplerX0Inpaint``-like ``model_k`` that keeps ``latent_image``, then ``process_latent_out``. The
"network" is a closed-form Gaussian denoiser. ``install_previews`` stands in for ``latent_preview.get_previewer`` and
the preview method of ``comfy.cli_args``. The real thing is exercised by the example workflows.
"""

from __future__ import annotations

import enum
import math
import sys
import types

import torch


class EpsSampling:
    """ComfyUI's EPS noise scaling over a log-spaced 14.6 -> 0.03 schedule."""

    sigma_min, sigma_max = 0.0292, 14.6146

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return noise * sigma.reshape(-1, *[1] * (noise.ndim - 1)) + latent_image

    def sigmas(self, steps: int) -> torch.Tensor:
        levels = torch.exp(torch.linspace(math.log(self.sigma_max), math.log(self.sigma_min), steps))
        return torch.cat([levels, torch.zeros(1)])


class ConstSampling(EpsSampling):
    """ComfyUI's CONST (flow) noise scaling over a linear 1 -> 0 schedule."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        s = sigma.reshape(-1, *[1] * (noise.ndim - 1))
        return s * noise + (1.0 - s) * latent_image

    def sigmas(self, steps: int) -> torch.Tensor:
        return torch.linspace(1.0, 0.0, steps + 1)


class SD15:
    """A latent format: model = 0.18215 raw."""

    scale_factor = 0.18215

    def process_in(self, latent):
        return latent * self.scale_factor

    def process_out(self, latent):
        return latent / self.scale_factor


class BaseModel:
    def __init__(self, sampling, denoiser):
        self.model_sampling, self.latent_format, self.denoiser = sampling, SD15(), denoiser

    def process_latent_in(self, latent):
        return self.latent_format.process_in(latent)

    def process_latent_out(self, latent):
        return self.latent_format.process_out(latent)


class ModelPatcher:
    def __init__(self, sampling, denoiser):
        self.model = BaseModel(sampling, denoiser)

    def get_model_object(self, name):
        return getattr(self.model, name)


class X0Inpaint:
    """Like KSamplerX0Inpaint: ``inner_model`` is the guider, whose ``inner_model`` is the BaseModel."""

    def __init__(self, base, latent_image):
        self.inner_model = types.SimpleNamespace(inner_model=base)
        self.latent_image = latent_image
        self.calls = []

    def __call__(self, x, sigma, denoise_mask=None, model_options=None, seed=None):
        self.calls.append(float(sigma[0]))
        return self.inner_model.inner_model.denoiser(x, sigma[0])


class KSAMPLER:
    def __init__(self, sampler_function, extra_options=None):
        self.sampler_function, self.extra_options = sampler_function, dict(extra_options or {})


runs: list[dict] = []  # what each sample_custom call received


def sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent_image, noise_mask=None, callback=None,
                  disable_pbar=False, seed=None):
    base = model.model
    latent = base.process_latent_in(latent_image) if bool(torch.count_nonzero(latent_image)) else latent_image
    model_k = X0Inpaint(base, latent)
    x = base.model_sampling.noise_scaling(sigmas[:1], noise, latent)
    out = sampler.sampler_function(model_k, x, sigmas, extra_args={"seed": seed, "model_options": {},
                                                                  "denoise_mask": noise_mask},
                                   callback=callback, disable=True, **sampler.extra_options)
    runs.append({"sigmas": sigmas, "noise": noise, "latent": latent_image, "calls": model_k.calls, "seed": seed,
                 "options": sampler.extra_options})
    return base.process_latent_out(out)


def calculate_sigmas(model_sampling, scheduler_name, steps):
    return model_sampling.sigmas(steps)


def install(monkeypatch) -> None:
    """Make ``import comfy.samplers``, ``comfy.sample``, ``comfy.utils`` and ``latent_preview`` find this fake."""
    comfy = types.ModuleType("comfy")
    samplers = types.ModuleType("comfy.samplers")
    samplers.KSAMPLER, samplers.calculate_sigmas = KSAMPLER, calculate_sigmas
    samplers.SCHEDULER_NAMES = ["normal", "karras", "simple"]
    sample = types.ModuleType("comfy.sample")
    sample.sample_custom = sample_custom
    utils = types.ModuleType("comfy.utils")
    utils.PROGRESS_BAR_ENABLED = False
    preview = types.ModuleType("latent_preview")
    preview.prepare_callback = lambda model, steps, x0_output_dict=None: None
    comfy.samplers, comfy.sample, comfy.utils = samplers, sample, utils
    modules = {"comfy": comfy, "comfy.samplers": samplers, "comfy.sample": sample, "comfy.utils": utils,
               "latent_preview": preview}
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    runs.clear()


class LatentPreviewMethod(enum.Enum):
    """ComfyUI's preview methods (comfy/cli_args.py)."""

    NoPreviews = "none"
    Auto = "auto"
    Latent2RGB = "latent2rgb"
    TAESD = "taesd"


class CorePreviewer:
    """What ComfyUI's own get_previewer hands out here: it records the latents it was shown."""

    def __init__(self, latent_format):
        self.latent_format, self.shown = latent_format, []

    def decode_latent_to_preview_image(self, preview_format, x0):
        self.shown.append(x0)
        return ("JPEG", "core preview", 512)


def core_get_previewer(device, latent_format):
    """ComfyUI 0.8's contract: None for ``none``, else a previewer (here always the stand-in)."""
    args = sys.modules["comfy.cli_args"].args
    return None if args.preview_method == LatentPreviewMethod.NoPreviews else CorePreviewer(latent_format)


class Flux2:
    """ComfyUI's FLUX.2 latent format: 128 channels at /16, model domain = raw."""

    latent_channels, latent_dimensions = 128, 2


class Wan21:
    """ComfyUI's Wan 2.1 video latent format (only what the live previews read)."""

    latent_channels, latent_dimensions = 16, 3


class SDXL:
    """ComfyUI's SDXL latent format: its own factors and bias, and a tiny decoder name."""

    latent_channels, latent_dimensions = 4, 2
    taesd_decoder_name = "taesdxl_decoder"

    def __init__(self):
        self.latent_rgb_factors = [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
                                   [-0.3165, -0.2492, -0.2188]]
        self.latent_rgb_factors_bias = [0.1084, -0.0175, -0.0011]


class Mystery:
    """A latent format latentbridge has no space for."""

    latent_channels, latent_dimensions = 7, 2


def install_previews(monkeypatch, method: str = "auto", preview_size: int = 512) -> types.ModuleType:
    """A ``latent_preview`` module with ComfyUI's ``get_previewer`` contract and ``comfy.cli_args.args`` holding the
    preview method; returns the ``latent_preview`` module."""
    comfy = sys.modules.get("comfy") or types.ModuleType("comfy")
    cli_args = types.ModuleType("comfy.cli_args")
    cli_args.LatentPreviewMethod = LatentPreviewMethod
    cli_args.args = types.SimpleNamespace(preview_method=LatentPreviewMethod(method), preview_size=preview_size)
    comfy.cli_args = cli_args
    preview = types.ModuleType("latent_preview")
    preview.get_previewer = core_get_previewer
    for name, module in {"comfy": comfy, "comfy.cli_args": cli_args, "latent_preview": preview}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return preview
