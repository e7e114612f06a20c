"""Iterative mixing in ComfyUI: Batch Unsampler, Iterative Mixing Sampler (a SAMPLER) and a KSampler with presets.

The core (:mod:`latentbridge.mixing`) does the work; these nodes only read what ComfyUI's MODEL knows and hand it
over, avoiding the pitfalls of the older node pack (docs/iterative-mixing.md):

* sigmas come from the MODEL itself (a ModelPatcher, never the bare model) with ComfyUI's schedulers, and the
  forward process from the model's own ``noise_scaling`` (``z + sigma eps``, or ``(1 - sigma) z + sigma eps`` for
  flow models);
* the start ComfyUI hands over is blended with the noised copy at sigma_0 like every later step, and that weight is 1
  unless ``maximum`` lowers it, so SamplerCustom's ``add_noise`` may be on or off and flow models (whose zero-noise
  start is ``(1 - sigma_0) z = 0``) keep the latent's structure; ``noise_seed`` seeds the noised copies;
* copies are made lazily at exactly the sampler's sigmas and seeded, any batch size works;
* the step rule is any ComfyUI sampler, mixed once per sigma transition on its own state
  (:mod:`latentbridge.integrations.comfyui.sampler_steps`); with the weight at 0 the result is the plain sampler's.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from latentbridge import mixing, spaces
from latentbridge.errors import InputError
from latentbridge.integrations.comfyui import sampler_steps
from latentbridge.integrations.comfyui.common import format_space, latent_samples, new_latent, stated_space
from latentbridge.integrations.comfyui.node import Node, Spec, computed, latent_input, node_inputs
from latentbridge.integrations.comfyui.words import node_errors
from latentbridge.mixing import noise as _noise

SIGMAS_KEY = "latentbridge_sigmas"  # LATENT key of a Batch Unsampler batch: the sigma of each step, sigma_0 first
NOISE_MODES = ("shared", "independent")
PRESET = "preset"  # COMBO value: take the preset's setting
_FALLBACK_SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta")
_EMPTY = ("the latent is empty (all zeros): iterative mixing refines an existing latent, usually an upscaled one; "
          "connect that latent (e.g. VAE Encode, or a sampler's output through Latent Upscale)")


def scheduler_names() -> list[str]:
    """ComfyUI's scheduler names (a short stand-in list outside ComfyUI)."""
    try:
        import comfy.samplers
    except ImportError:
        return list(_FALLBACK_SCHEDULERS)
    return list(comfy.samplers.SCHEDULER_NAMES)


def model_sigmas(model: Any, scheduler: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """The sigmas ComfyUI's BasicScheduler gives for this MODEL (the tail of an ``int(steps / denoise)``-step
    schedule), on the CPU."""
    import comfy.samplers

    if not 0.0 < denoise <= 1.0:
        raise InputError(f"denoise is the fraction of the schedule to run, in (0, 1]; got {denoise}")
    total = steps if denoise >= 1.0 else int(steps / denoise)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, total).cpu()
    return sigmas[-(steps + 1):]


def ksampler_sigmas(model: Any, sampler: str, scheduler: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """The sigmas ComfyUI's KSampler runs for these settings (dpm_2 and uni_pc drop the penultimate sigma), on the
    CPU."""
    import comfy.samplers

    if not 0.0 < denoise <= 1.0:
        raise InputError(f"denoise is the fraction of the schedule to run, in (0, 1]; got {denoise}")
    return comfy.samplers.KSampler(model, steps=steps, device="cpu", sampler=sampler, scheduler=scheduler,
                                   denoise=denoise, model_options=model.model_options).sigmas.cpu()


def model_prediction(model_sampling: Any) -> str:
    """``eps`` when the model's ``noise_scaling`` is ``z + sigma e`` (eps, v, EDM), ``flow`` when it is
    ``(1 - sigma) z + sigma e`` (ComfyUI's CONST): read off the model, not its class name."""
    sigma, one, zero = torch.tensor([0.5]), torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)
    alpha = float(model_sampling.noise_scaling(sigma, zero.clone(), one.clone(), max_denoise=False).flatten()[0])
    noise = float(model_sampling.noise_scaling(sigma, one.clone(), zero.clone(), max_denoise=False).flatten()[0])
    if math.isclose(noise, 0.5, abs_tol=1e-6):
        if math.isclose(alpha, 1.0, abs_tol=1e-6):
            return "eps"
        if math.isclose(alpha, 0.5, abs_tol=1e-6):
            return "flow"
    raise InputError(f"this model noises latents in a way iterative mixing does not know ({type(model_sampling).__name__}"
                     "): it supports z + sigma*eps (eps, v-prediction) and (1 - sigma)*z + sigma*eps (flow) models")


def model_space(model: Any) -> spaces.LatentSpace | None:
    """The registry space of a MODEL's ComfyUI latent format, if latentbridge knows it."""
    return format_space(model.get_model_object("latent_format"))


def _check_latent(samples: dict, name: str) -> torch.Tensor:
    tensor = latent_samples(samples, name)
    if not bool(torch.count_nonzero(tensor)):
        raise InputError(_EMPTY)
    return tensor


# --- the KSAMPLER functions ------------------------------------------------------------------------------------------


def _clean_reference(model: Any) -> torch.Tensor:
    """The clean model-domain latent SamplerCustom was given (ComfyUI's KSamplerX0Inpaint keeps it)."""
    reference = getattr(model, "latent_image", None)
    if not isinstance(reference, torch.Tensor) or not bool(torch.count_nonzero(reference)):
        raise InputError(_EMPTY)
    return reference


def _noised_batch(batch: dict, base_model: Any, like: torch.Tensor, steps: int) -> mixing.NoisedBatch:
    """A Batch Unsampler LATENT as the sampler's noised copies (model domain), checked against its sigmas."""
    samples = latent_samples(batch, "noised_batch").to(like.device, like.dtype)
    return mixing.NoisedBatch(base_model.process_latent_in(samples), steps, sigmas=batch.get(SIGMAS_KEY))


@torch.no_grad()
def sample_iterative_mixing(model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                            callback: Any = None, disable: bool | None = None, *, schedule: str = "cosine",
                            alpha_1: float = 3.0, start: float = 0.0, stop: float = 1.0, minimum: float = 0.0,
                            maximum: float = 1.0, sampler: str = "euler", blend: str = "lerp", eta: float = 1.0,
                            noise: str = "shared", noised_batch: dict | None = None) -> torch.Tensor:
    """The function behind the Iterative Mixing SAMPLER (ComfyUI's KSAMPLER calling convention).

    ``model`` is ComfyUI's KSamplerX0Inpaint (denoiser, inpainting, and the clean ``latent_image``); ``sampler`` is
    any ComfyUI sampler, run by :func:`sampler_steps.run` with core's mixing step before each sigma transition,
    starting from ``x`` (blended at sigma_0 like every later state: with weight 1 the start is the noised copy).
    Copies come from ``noised_batch`` (a Batch Unsampler LATENT) or are made lazily, seeded by ``extra_args['seed']``
    (SamplerCustom's noise_seed).
    """
    base = model.inner_model.inner_model
    prediction = model_prediction(base.model_sampling)
    reference = _clean_reference(model)
    seed = int((extra_args or {}).get("seed") or 0)
    steps = len(sigmas) - 1
    if noised_batch is not None:
        copies = _noised_batch(noised_batch, base, reference, steps)
    else:
        copies = mixing.Unsampler(reference, sigmas[:-1], prediction=prediction, seed=seed, shared_noise=noise == "shared")
    weights = mixing.schedule(schedule, steps, alpha_1=alpha_1, start=start, stop=stop, minimum=minimum, maximum=maximum)
    hook = mixing.mixing_hook(copies, x, sigmas, weights, blend=blend, prediction=prediction)
    return sampler_steps.run(sampler, model, x, sigmas, extra_args, callback, disable, hook, {"eta": eta})


def _ksampler(function: Any, options: dict) -> Any:
    """A KSAMPLER for ``function``; ComfyUI's ddim (euler with fresh inpainting noise) keeps its inpainting option."""
    import comfy.samplers

    inpaint = {"random": True} if sampler_steps.comfy_name(options.get("sampler", "")) == "ddim" else {}
    return comfy.samplers.KSAMPLER(function, extra_options=options, inpaint_options=inpaint)


def _sample(model: Any, noise: torch.Tensor, cfg: float, sampler: Any, sigmas: torch.Tensor, positive: Any,
            negative: Any, latent: dict, seed: int) -> torch.Tensor:
    """One ComfyUI sampling run (progress bar and live preview included); returns raw-domain samples."""
    import comfy.sample
    import comfy.utils
    import latent_preview

    callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
    return comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent["samples"],
                                      noise_mask=latent.get("noise_mask"), callback=callback,
                                      disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)


# --- the nodes -------------------------------------------------------------------------------------------------------


MIXING_INPUTS = node_inputs({  # the mixing settings of the SAMPLER node, named alike on the KSampler
    "sampler": (sampler_steps.sampler_names, {"default": "euler", "tooltip": "any ComfyUI sampler, mixed once "
                "per step on its own state (see the node's description for the few that change); flow_euler, "
                "from earlier versions, is euler"}),
    "schedule": (list(mixing.SCHEDULES), {"default": "cosine", "tooltip": "weight of the noised copy before each "
                 "step: cosine = DemoFusion (1 at the start, falling to 0); cosine_mixer = the older Iterative "
                 "Mixer's curve; linear; logistic"}),
    "alpha_1": ("FLOAT", {"default": 3.0, "min": 0.05, "max": 100.0, "step": 0.05, "tooltip": "schedule exponent "
                "(DemoFusion: 3); larger lets go of the noised copy sooner, so the model invents more"}),
    "blend": (list(mixing.BLENDS), {"default": "lerp", "tooltip": "how the copy is mixed in: lerp, "
              "norm_preserving (keeps the magnitude the sampler expects) or slerp"}),
})
SCHEDULER_INPUT = (scheduler_names, {"default": "normal", "tooltip": "ComfyUI scheduler for the sigmas"})
NOISE_INPUT = (list(NOISE_MODES), {"default": "shared", "tooltip": "shared: one noise tensor for every step (DemoFusion); "
               "independent: fresh noise per step"})


def preset_choices() -> list[str]:
    """The KSampler's preset values: ``auto`` then every registered space that has a preset."""
    return ["auto", *mixing.PRESETS]


def with_preset(spec: Spec) -> Spec:
    """A mixing input of the KSampler: ``preset`` (taking the preset's setting, the default) before its choices."""
    kind, options = spec
    return (lambda: [PRESET, *computed(kind)],
            {**options, "default": PRESET, "tooltip": options["tooltip"] + "; preset: the preset's"})


class BatchUnsampler(Node):
    NODE_ID = "LatentBridgeBatchUnsampler"
    DISPLAY_NAME = "Batch Unsampler (latentbridge)"
    DESCRIPTION = ("Noise copies of a clean latent to every sigma of the MODEL's schedule, with its own forward process "
                   "(flow models: (1 - sigma) z + sigma eps), seeded, as one batch: steps x batch latents, sigma_0's "
                   "first. The Iterative Mixing Sampler makes these lazily; use this node to look at them or feed "
                   "them in.")
    REQUIRED = node_inputs({
        "model": ("MODEL", {"tooltip": "the model whose schedule and forward process to use"}),
        "samples": latent_input("noise", what="the clean latent"),
        "scheduler": SCHEDULER_INPUT,
        "steps": ("INT", {"default": 20, "min": 1, "max": 1000, "tooltip": "sampler steps: one copy per step"}),
        "denoise": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 1.0, "step": 0.01, "tooltip":
                    "fraction of the schedule (as on KSampler): below 1 starts at a lower sigma"}),
        "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip": "seed of the noise"}),
        "noise": NOISE_INPUT,
    })
    RETURN_TYPES = ("LATENT", "SIGMAS")
    RETURN_NAMES = ("noised_batch", "sigmas")
    OUTPUT_TOOLTIPS = ("the noised copies (raw domain), step-major, noisiest first",
                       "the sampler schedule they match (ends in 0): give it to SamplerCustom")
    FUNCTION = "unsample"

    @node_errors()
    def unsample(self, model: Any, samples: dict, scheduler: str = "normal", steps: int = 20, denoise: float = 1.0,
                 seed: int = 0, noise: str = "shared") -> tuple[dict, torch.Tensor]:
        tensor = _check_latent(samples, "samples")
        sigmas = model_sigmas(model, scheduler, steps, denoise)
        latent_format = model.get_model_object("latent_format")
        prediction = model_prediction(model.get_model_object("model_sampling"))
        copies = mixing.Unsampler(latent_format.process_in(tensor.float()), sigmas[:-1], prediction=prediction, seed=seed,
                                  shared_noise=noise == "shared")
        batch = latent_format.process_out(copies.materialise())
        out = {k: v for k, v in samples.items() if k != "batch_index"}  # one index per latent no longer fits
        out[SIGMAS_KEY] = [float(s) for s in sigmas[:-1]]
        return new_latent(out, batch, stated_space(samples) or model_space(model)), sigmas


class MixingSampler(Node):
    NODE_ID = "LatentBridgeMixingSampler"
    DISPLAY_NAME = "Iterative Mixing Sampler (latentbridge)"
    DESCRIPTION = ("A SAMPLER for SamplerCustom: DemoFusion's iterative mixing. Before each step the latent is blended "
                   "with the clean latent_image noised to that step's sigma, with a weight falling from 1 to 0, so the "
                   "result keeps the input's composition while the model adds detail (typically after Latent "
                   "Upscale). noise_seed seeds the noised copies; add_noise may be on or off (the run starts from the "
                   "noised copy); works for eps, v and flow models and any batch size. " + sampler_steps.describe())
    REQUIRED = node_inputs({
        **MIXING_INPUTS,
        "start": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 0.99, "step": 0.01, "tooltip": "fraction of "
                  "the steps where the weight starts to fall (it holds its first value before)"}),
        "stop": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 10.0, "step": 0.01, "tooltip": "fraction "
                 "of the steps where it reaches 0; above 1 stretches the curve so the copy is mixed in to "
                 "the end"}),
        "minimum": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                    "lower clamp of the weight (above 0: some of the copy until the end)"}),
        "maximum": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                    "upper clamp of the weight (below 1: the sampler contributes from the first step)"}),
        "noise": NOISE_INPUT,
        "eta": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05, "tooltip":
                "noise of the ancestral and SDE samplers that have an eta setting (1 is ComfyUI's default "
                "for them, 0 makes them deterministic); other samplers ignore it"}),
    })
    OPTIONAL = node_inputs({
        "noised_batch": ("LATENT", {"tooltip": "noised copies from Batch Unsampler (same model, scheduler, "
                         "steps and denoise as the sigmas given to SamplerCustom); unconnected: made lazily"}),
    })
    RETURN_TYPES = ("SAMPLER",)
    OUTPUT_TOOLTIPS = ("connect to SamplerCustom's sampler input",)
    FUNCTION = "get_sampler"

    @node_errors()
    def get_sampler(self, sampler: str = "euler", schedule: str = "cosine", alpha_1: float = 3.0, blend: str = "lerp",
                    start: float = 0.0, stop: float = 1.0, minimum: float = 0.0, maximum: float = 1.0,
                    noise: str = "shared", eta: float = 1.0, noised_batch: dict | None = None) -> tuple[Any]:
        mixing.schedule(schedule, 1, alpha_1=alpha_1, start=start, stop=stop, minimum=minimum, maximum=maximum)
        mixing.blending.check_blend(blend)
        if noised_batch is not None:
            _check_latent(noised_batch, "noised_batch")
        options = {"schedule": schedule, "alpha_1": alpha_1, "start": start, "stop": stop, "minimum": minimum,
                   "maximum": maximum, "sampler": sampler, "blend": blend, "eta": eta, "noise": noise,
                   "noised_batch": noised_batch}
        return (_ksampler(sample_iterative_mixing, options),)


def settings_for(model: Any, preset: str, overrides: dict[str, Any]) -> tuple[mixing.Preset, str]:
    """The preset named (``auto``: the model's space, else its forward process) with the node's overrides applied,
    and a line naming where it came from."""
    if preset == "auto":
        space = model_space(model)
        if space is not None:
            base, how = mixing.preset(space), f"auto ({space.id}: the model's latent format)"
        else:
            prediction = model_prediction(model.get_model_object("model_sampling"))
            base, how = mixing.preset(prediction), (f"auto ({prediction}: the model's forward process; its latent format is "
                                                    "new to latentbridge)")
    else:
        base, how = mixing.preset(preset), preset
    given = {k: v for k, v in overrides.items() if v not in (PRESET, None)}
    return replace(base, **given), how


class MixingKSampler(Node):
    NODE_ID = "LatentBridgeMixingKSampler"
    DISPLAY_NAME = "Iterative Mixing KSampler (latentbridge)"
    DESCRIPTION = ("Iterative mixing in one node, with settings from a preset per model family: a mixing pass from the "
                   "(upscaled) latent, then a short clean-up pass from fresh noise that removes leftover grain. Each "
                   "setting left at 'preset' (or 0) comes from the preset. With maximum 0 and cleanup 0 it is "
                   "ComfyUI's KSampler (same seed, noise and sigmas). " + sampler_steps.describe())
    REQUIRED = node_inputs({
        "model": ("MODEL", {"tooltip": "the model to sample with"}),
        "positive": ("CONDITIONING", {"tooltip": "what the image should show"}),
        "negative": ("CONDITIONING", {"tooltip": "what it should not show"}),
        "latent_image": latent_input("refine, usually upscaled", what="the clean latent"),
        "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                 "tooltip": "seed of the noised copies and of the clean-up noise"}),
        "cfg": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                "tooltip": "classifier-free guidance scale, as on KSampler"}),
        "scheduler": SCHEDULER_INPUT,
        "preset": (preset_choices, {"default": "auto", "tooltip": "starting settings per model "
                   "family; auto: from the model's latent format (flow models get the flow preset)"}),
        "steps": ("INT", {"default": 0, "min": 0, "max": 1000, "tooltip": "steps of the mixing pass; 0: the "
                  "preset's"}),
        "sampler": with_preset(MIXING_INPUTS["sampler"]),
        "schedule": with_preset(MIXING_INPUTS["schedule"]),
        "alpha_1": ("FLOAT", {**MIXING_INPUTS["alpha_1"][1], "default": 0.0, "min": 0.0,
                    "tooltip": MIXING_INPUTS["alpha_1"][1]["tooltip"] + "; 0: the preset's"}),
        "blend": with_preset(MIXING_INPUTS["blend"]),
        "denoise": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "fraction of "
                    "the schedule the mixing pass runs; 0: the preset's (1, the whole schedule)"}),
        "cleanup": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 1.0, "step": 0.01, "tooltip": "fraction of "
                    "the schedule the clean-up pass re-runs from fresh noise (0: none, 0.05-0.25 typical); "
                    "-1: the preset's"}),
    })
    OPTIONAL = node_inputs({
        "maximum": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "upper clamp of "
                    "the noised copy's weight; 0 turns mixing off (with cleanup 0: ComfyUI's KSampler)"}),
    })
    RETURN_TYPES = ("LATENT", "STRING")
    RETURN_NAMES = ("samples", "settings")
    OUTPUT_TOOLTIPS = ("the refined latent (raw domain)", "the settings used, the forward process and the sigmas")
    FUNCTION = "sample"

    @node_errors()
    def sample(self, model: Any, positive: Any, negative: Any, latent_image: dict, seed: int = 0, cfg: float = 7.0,
               scheduler: str = "normal", preset: str = "auto", steps: int = 0, sampler: str = PRESET,
               schedule: str = PRESET, alpha_1: float = 0.0, blend: str = PRESET, denoise: float = 0.0,
               cleanup: float = -1.0, maximum: float = 1.0) -> dict[str, Any]:
        import comfy.sample
        import comfy.samplers

        tensor = _check_latent(latent_image, "latent_image")
        settings, how = settings_for(model, preset, {
            "steps": steps or None, "sampler": sampler, "schedule": schedule, "alpha_1": alpha_1 or None,
            "blend": blend, "denoise": denoise or None, "cleanup": cleanup if cleanup >= 0 else None})
        prediction = model_prediction(model.get_model_object("model_sampling"))
        name = sampler_steps.comfy_name(settings.sampler)
        mixing.blending.check_blend(settings.blend)
        mixing.schedule(settings.schedule, settings.steps, alpha_1=settings.alpha_1, maximum=maximum)
        sigmas = ksampler_sigmas(model, name, scheduler, settings.steps, settings.denoise)
        options = {"schedule": settings.schedule, "alpha_1": settings.alpha_1, "sampler": name,
                   "blend": settings.blend, "maximum": maximum}
        noise = comfy.sample.prepare_noise(tensor, seed, latent_image.get("batch_index"))  # KSampler's own noise
        mixed = _sample(model, noise, cfg, _ksampler(sample_iterative_mixing, options), sigmas, positive, negative,
                        latent_image, seed)
        change = sampler_steps.what_changes(name)
        text = (f"preset {how}: steps {settings.steps}, sampler {settings.sampler} ("
                f"{'its state kept' if change is None else change}), schedule {settings.schedule}, "
                f"alpha_1 {settings.alpha_1:g}, maximum {maximum:g}, blend {settings.blend}, denoise "
                f"{settings.denoise:g}, cleanup {settings.cleanup:g}; forward process {prediction} "
                f"({'(1 - sigma) z + sigma eps' if prediction == 'flow' else 'z + sigma eps'}); sigmas "
                f"{float(sigmas[0]):.4g} -> {float(sigmas[-1]):.4g}")
        if settings.cleanup > 0:
            tail = mixing.cleanup_sigmas(sigmas, settings.cleanup)
            fresh = _noise.randn(mixed, seed, _noise.CLEANUP_RENOISE)
            mixed = _sample(model, fresh, cfg, comfy.samplers.sampler_object(name), tail, positive, negative,
                            {**latent_image, "samples": mixed}, _noise.derive_seed(seed, _noise.CLEANUP_ANCESTRAL))
            text += f"; clean-up from sigma {float(tail[0]):.4g} over {len(tail) - 1} steps"
        out = new_latent(latent_image, mixed, stated_space(latent_image) or model_space(model))
        return {"ui": {"text": [text]}, "result": (out, text)}


NODES = (BatchUnsampler, MixingSampler, MixingKSampler)
