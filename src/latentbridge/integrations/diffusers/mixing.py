"""Iterative-mixing upscale for diffusers pipelines: SD1.x/2.x, SDXL, SD3 and FLUX.1 classes.

The recipe: take (or generate with the pipeline itself) a latent, upscale it in the model domain, noise copies of it
to every sigma of the pipeline scheduler's schedule, sample with the copy mixed in before each step
(:mod:`latentbridge.mixing`), clean up at low denoise, decode. The pipeline's own UNet or transformer, scheduler
and prompt encoding drive every step; latentbridge only supplies the sampler loop.

* :func:`pipeline_denoiser` adapts a pipeline's network, conditioning and guidance to ``D(x, sigma) -> x0``.
* :func:`pipeline_sigmas` reads the sigma schedule from the pipeline's scheduler.
* :func:`mixing_upscale` runs the whole recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from ... import mixing, spaces, upscale
from ...errors import InputError

# The families this adapter drives (registry space ids) and the pipeline component that holds each one's network.
_NETWORK = {"sd1": "unet", "sdxl": "unet", "sd3": "transformer", "flux1": "transformer"}
FAMILIES = tuple(_NETWORK)


@dataclass
class MixingUpscaleOutput:
    """What :func:`mixing_upscale` returns; latents are in the model domain (what the pipeline's sampler sees)."""

    images: Any  # decoded images in ``output_type`` (None for output_type="latent")
    latents: torch.Tensor  # the mixed, cleaned-up result at the new size
    base_latents: torch.Tensor  # the latent before upscaling (generated or given)
    settings: mixing.Preset  # the settings the run used


def family(pipe: Any) -> str:
    """Which family ``pipe`` belongs to (the registry space it samples in: sd1, sdxl, sd3 or flux1), from
    :func:`latentbridge.spaces.from_diffusers`, checked against the network the pipeline carries."""
    name = type(pipe).__name__
    try:
        fam = spaces.from_diffusers(pipe).id
    except InputError:
        fam = None
    if fam not in _NETWORK or getattr(pipe, _NETWORK[fam], None) is None:
        raise InputError(f"mixing_upscale does not know {name}: it drives StableDiffusion(XL)Pipeline, "
                         "StableDiffusion3Pipeline and FluxPipeline (and their img2img/variants of the same classes)")
    if _NETWORK[fam] == "unet" and pipe.unet.config.in_channels != pipe.vae.config.latent_channels:
        raise InputError(f"{name}'s UNet takes {pipe.unet.config.in_channels} input channels (an inpainting or "
                         "upscaler model with extra inputs): mixing needs a plain text-to-image UNet")
    return fam


def _prediction(pipe: Any, fam: str) -> str:
    if spaces.get(fam).is_flow:
        return "flow"
    prediction = pipe.scheduler.config.get("prediction_type", "epsilon")
    if prediction not in ("epsilon", "v_prediction"):
        raise InputError(f"the scheduler predicts {prediction!r}; mixing supports 'epsilon' and 'v_prediction' UNets")
    return "v" if prediction == "v_prediction" else "eps"


def _net_module(pipe: Any) -> torch.nn.Module:
    return pipe.transformer if getattr(pipe, "transformer", None) is not None else pipe.unet


def _multiple(pipe: Any, fam: str) -> int:
    """Latent height and width must be multiples of this for the network (UNet levels, transformer patches)."""
    if fam == "flux1":
        return 2
    if fam == "sd3":
        return pipe.transformer.config.patch_size
    return 2 ** (len(pipe.unet.config.block_out_channels) - 1)


# --- sigmas -------------------------------------------------------------------------------------------------------


def _decreasing(sig: torch.Tensor) -> bool:
    return bool((sig[1:] < sig[:-1]).all())


def _full_schedule(pipe: Any, fam: str, steps: int, latent_hw: tuple[int, int]) -> torch.Tensor:
    """The scheduler's sigmas for ``steps`` steps (model domain, ending in 0), on a fresh copy of the scheduler."""
    config = pipe.scheduler.config
    sched = type(pipe.scheduler).from_config(config)
    if fam in ("sd3", "flux1"):
        kwargs: dict[str, Any] = {}
        if config.get("use_dynamic_shifting"):
            from diffusers.pipelines.flux.pipeline_flux import calculate_shift

            seq_len = (latent_hw[0] // 2) * (latent_hw[1] // 2)
            kwargs["mu"] = calculate_shift(seq_len, config.get("base_image_seq_len", 256),
                                           config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                                           config.get("max_shift", 1.15))
        if fam == "flux1":  # FluxPipeline passes these sigmas; SD3 lets the scheduler space them
            kwargs["sigmas"] = [1.0 - i / steps for i in range(steps)]
        else:
            kwargs["num_inference_steps"] = steps
        sched.set_timesteps(**kwargs)
        sig = sched.sigmas.float()
    else:
        sched.set_timesteps(steps)
        sig = getattr(sched, "sigmas", None)
        if sig is None or len(sig) != steps + 1 or not _decreasing(torch.as_tensor(sig)[:-1]):
            # PNDM/DDIM/DDPM keep no sigmas (and Heun-type ones repeat them): space them as Euler does on the same
            # training schedule, which is how k-diffusion samplers run these models
            from diffusers import EulerDiscreteScheduler

            sched = EulerDiscreteScheduler.from_config(config)
            sched.set_timesteps(steps)
            sig = sched.sigmas
        sig = torch.as_tensor(sig).float()
    return sig if sig[-1] == 0 else torch.cat([sig, sig.new_zeros(1)])


def pipeline_sigmas(pipe: Any, steps: int, *, denoise: float = 1.0, latent_hw: tuple[int, int] = (128, 128)) -> torch.Tensor:
    """Model-domain sigmas of ``pipe``'s scheduler for ``steps`` steps at ``denoise`` (the tail of an
    ``int(steps / denoise)``-step schedule, as ComfyUI does); ``latent_hw`` sets FLUX's resolution-dependent shift."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive integer; got {steps!r}")
    if not 0.0 < denoise <= 1.0:
        raise InputError(f"denoise is the fraction of the schedule to run, in (0, 1]; got {denoise}")
    fam = family(pipe)
    total = steps if denoise >= 1.0 else max(steps, int(steps / denoise))
    return _full_schedule(pipe, fam, total, latent_hw)[-(steps + 1):]


def _sigma_to_t(alphas_cumprod: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Training timestep of a sigma, interpolated in log-sigma over the discrete schedule (k-diffusion's rule)."""
    log_sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().log().float()

    def timestep(sigma: torch.Tensor) -> torch.Tensor:
        ls = log_sigmas.to(sigma.device)
        log_sigma = sigma.float().clamp_min(1e-10).log()
        low = (log_sigma[None] - ls[:, None]).ge(0).cumsum(0).argmax(0).clamp(max=len(ls) - 2)
        lo, hi = ls[low], ls[low + 1]
        w = ((lo - log_sigma) / (lo - hi)).clamp(0, 1)
        return (1 - w) * low + w * (low + 1)

    return timestep


# --- the denoiser ---------------------------------------------------------------------------------------------------


def _batch(t: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """Repeat a batch-1 conditioning tensor to ``n``; check any other size."""
    if t is None or t.shape[0] == n:
        return t
    if t.shape[0] != 1:
        raise InputError(f"conditioning for a batch of {t.shape[0]} cannot drive {n} latents: give one prompt, or one "
                         "per latent")
    return t.expand(n, *t.shape[1:])


def _encode(pipe: Any, fam: str, prompt: Any, negative_prompt: Any, cfg: bool, embeds: dict) -> dict:
    """The pipeline's own prompt encoding; returns positive/negative embeddings (and pooled ones)."""
    device = pipe._execution_device
    if fam == "flux1":
        pe, pooled, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=device, num_images_per_prompt=1,
                                           prompt_embeds=embeds.get("prompt_embeds"),
                                           pooled_prompt_embeds=embeds.get("pooled_prompt_embeds"))
        return {"embeds": pe, "pooled": pooled}
    if fam == "sd1":
        pe, ne = pipe.encode_prompt(prompt, device, 1, cfg, negative_prompt,
                                    prompt_embeds=embeds.get("prompt_embeds"),
                                    negative_prompt_embeds=embeds.get("negative_prompt_embeds"))
        return {"embeds": pe, "neg_embeds": ne}
    extra = {"prompt_3": None} if fam == "sd3" else {}
    pe, ne, pooled, neg_pooled = pipe.encode_prompt(
        prompt=prompt, prompt_2=None, device=device, num_images_per_prompt=1, do_classifier_free_guidance=cfg,
        negative_prompt=negative_prompt, **extra, **{k: embeds.get(k) for k in (
            "prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")})
    return {"embeds": pe, "neg_embeds": ne, "pooled": pooled, "neg_pooled": neg_pooled}


def pipeline_denoiser(
    pipe: Any,
    *,
    prompt: str | list[str] | None = None,
    negative_prompt: str | list[str] | None = None,
    guidance_scale: float | None = None,
    image_size: tuple[int, int] | None = None,
    **embeds: torch.Tensor,
) -> mixing.Denoiser:
    """``D(x, sigma) -> x0`` over model-domain latents, driven by the pipeline's network and prompt encoding.

    Classifier-free guidance (scale ``guidance_scale``, the pipeline's usual default when None) is applied to the
    raw predictions; FLUX uses its distilled guidance embedding instead. ``embeds`` are the pipeline's
    ``prompt_embeds``-style arguments, for use without text encoders. ``image_size`` (pixels) sets SDXL's size
    conditioning; by default it follows the latent.
    """
    fam = family(pipe)
    prediction = _prediction(pipe, fam)
    net_module = _net_module(pipe)
    if guidance_scale is None:
        guidance_scale = spaces.get(fam).guidance
    cfg = fam != "flux1" and guidance_scale > 1.0
    with torch.no_grad():
        cond = _encode(pipe, fam, prompt, negative_prompt, cfg, embeds)
    dtype = net_module.dtype
    vae_scale = getattr(pipe, "vae_scale_factor", 8)

    def both(key: str, n: int) -> torch.Tensor:
        """Conditioning for a batch of n latents: [negative; positive] under guidance, else positive."""
        pos = _batch(cond[key], n)
        return (torch.cat([_batch(cond["neg_" + key], n), pos]) if cfg else pos).to(dtype)

    def forward(x_in: torch.Tensor, t: torch.Tensor, n: int) -> torch.Tensor:
        emb = both("embeds", n)
        if fam == "sd1":
            return pipe.unet(x_in, t, encoder_hidden_states=emb).sample
        if fam == "sdxl":
            h, w = image_size or (x_in.shape[-2] * vae_scale, x_in.shape[-1] * vae_scale)
            pooled = both("pooled", n)
            proj = pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None else pooled.shape[-1]
            time_ids = pipe._get_add_time_ids((h, w), (0, 0), (h, w), dtype, text_encoder_projection_dim=proj)
            added = {"text_embeds": pooled, "time_ids": time_ids.to(x_in.device).expand(x_in.shape[0], -1)}
            return pipe.unet(x_in, t, encoder_hidden_states=emb, added_cond_kwargs=added).sample
        if fam == "sd3":
            return pipe.transformer(hidden_states=x_in, timestep=t, encoder_hidden_states=emb,
                                    pooled_projections=both("pooled", n)).sample
        b, c, h, w = x_in.shape  # flux1: the transformer takes 2x2-packed tokens with position ids
        guidance = (torch.full((b,), guidance_scale, device=x_in.device, dtype=torch.float32)
                    if pipe.transformer.config.guidance_embeds else None)
        out = pipe.transformer(hidden_states=pipe._pack_latents(x_in, b, c, h, w), timestep=t, guidance=guidance,
                               pooled_projections=both("pooled", n), encoder_hidden_states=emb,
                               txt_ids=torch.zeros(emb.shape[1], 3, device=x_in.device, dtype=dtype),
                               img_ids=pipe._prepare_latent_image_ids(b, h // 2, w // 2, x_in.device, dtype)).sample
        return pipe._unpack_latents(out, h * vae_scale, w * vae_scale, vae_scale)

    def net(x_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = x_in.shape[0]
        x_in, t = x_in.to(dtype), t.to(torch.float32 if fam in ("sd1", "sdxl") else dtype)
        if cfg:
            x_in, t = torch.cat([x_in, x_in]), torch.cat([t, t])
        out = forward(x_in, t, n).float()
        if not cfg:
            return out
        uncond, positive = out.chunk(2)
        return uncond + guidance_scale * (positive - uncond)

    if prediction == "flow":
        train = pipe.scheduler.config.get("num_train_timesteps", 1000)
        timestep = (lambda s: s) if fam == "flux1" else (lambda s: s * train)  # FLUX takes t / 1000 = sigma
    else:
        timestep = _sigma_to_t(pipe.scheduler.alphas_cumprod)
    return mixing.Denoiser(net, prediction, timestep=timestep)


# --- the recipe -----------------------------------------------------------------------------------------------------


def _space(pipe: Any, fam: str) -> spaces.LatentSpace:
    """The family's space with the normalisation this pipeline's VAE config states (model <-> raw)."""
    cfg = pipe.vae.config
    mean, std = cfg.get("latents_mean"), cfg.get("latents_std")
    return replace(spaces.get(fam), scaling_factor=float(cfg.get("scaling_factor") or 1.0),
                   shift_factor=float(cfg.get("shift_factor") or 0.0),
                   latents_mean=tuple(mean) if mean is not None and std is not None else None,
                   latents_std=tuple(std) if mean is not None and std is not None else None)


def decode(pipe: Any, latents: torch.Tensor, output_type: str = "pil") -> Any:
    """Decode model-domain latents with the pipeline's VAE and image processor."""
    raw = _space(pipe, family(pipe)).from_model(latents.float())
    with torch.no_grad():
        image = pipe.vae.decode(raw.to(pipe.vae.device, pipe.vae.dtype)).sample
    return pipe.image_processor.postprocess(image, output_type=output_type)


def _default_size(pipe: Any, fam: str) -> int:
    base = pipe.unet.config.sample_size if fam in ("sd1", "sdxl") else pipe.default_sample_size
    return int(base) * pipe.vae_scale_factor


def _generate(pipe: Any, fam: str, *, height: int, width: int, steps: int, seed: int, **kwargs: Any) -> torch.Tensor:
    """A model-domain latent from the pipeline's own sampling (output_type='latent')."""
    out = pipe(height=height, width=width, num_inference_steps=steps, output_type="latent",
               generator=torch.Generator("cpu").manual_seed(seed), **{k: v for k, v in kwargs.items() if v is not None})
    latents = out.images
    return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor) if fam == "flux1" else latents


def mixing_upscale(
    pipe: Any,
    latents: torch.Tensor | None = None,
    *,
    prompt: str | list[str] | None = None,
    negative_prompt: str | list[str] | None = None,
    preset: str | None = None,
    scale: float | None = None,
    upscale_method: str = "bicubic",
    steps: int | None = None,
    alpha_1: float | None = None,
    schedule: str | None = None,
    sampler: str | None = None,
    blend: str | None = None,
    denoise: float | None = None,
    cleanup: float | None = None,
    guidance_scale: float | None = None,
    height: int | None = None,
    width: int | None = None,
    base_steps: int | None = None,
    seed: int = 0,
    output_type: str = "pil",
    progress: bool = True,
    **embeds: torch.Tensor,
) -> MixingUpscaleOutput:
    """Upscale with iterative mixing on a diffusers pipeline; returns images and model-domain latents.

    ``latents`` (model domain, what ``output_type='latent'`` gives, FLUX's unpacked to (B, 16, H, W)) are
    generated with the pipeline at ``height`` x ``width`` and ``base_steps`` when not given. Settings come from
    the family's preset (``mixing.PRESETS``) and each keyword overrides one. ``embeds`` are ``prompt_embeds``-style
    arguments passed to the pipeline's prompt encoding (and generation).
    """
    fam = family(pipe)
    prediction = _prediction(pipe, fam)
    given = {"steps": steps, "alpha_1": alpha_1, "schedule": schedule, "sampler": sampler, "blend": blend,
             "denoise": denoise, "cleanup": cleanup, "scale": scale}
    settings = replace(mixing.preset(preset or fam), **{k: v for k, v in given.items() if v is not None})
    mixing.schedule(settings.schedule, settings.steps, alpha_1=settings.alpha_1)  # fail before any work
    mixing.samplers.check_sampler(settings.sampler, prediction)
    mixing.blending.check_blend(settings.blend)
    if not 0 < settings.scale <= 8:
        raise InputError(f"scale must be in (0, 8]; got {settings.scale}")
    if prompt is None and embeds.get("prompt_embeds") is None:
        raise InputError("give a prompt (or prompt_embeds, with pooled_prompt_embeds for SDXL/SD3/FLUX)")
    space, device = _space(pipe, fam), pipe._execution_device
    if latents is None:
        size = _default_size(pipe, fam)
        latents = _generate(pipe, fam, height=height or size, width=width or size, steps=base_steps or settings.steps,
                            seed=seed, prompt=prompt, guidance_scale=guidance_scale,
                            negative_prompt=negative_prompt if fam != "flux1" else None, **embeds)
    spaces.validate(latents, space, "model")
    base = latents.detach().to(device, torch.float32)
    m = _multiple(pipe, fam)
    target = tuple(max(m, round(d * settings.scale / m) * m) for d in base.shape[-2:])
    big = upscale.upscale(base, space, method=upscale_method, domain="model", size=target)
    sigmas = pipeline_sigmas(pipe, settings.steps, denoise=settings.denoise, latent_hw=target).to(device)
    denoiser = pipeline_denoiser(pipe, prompt=prompt, negative_prompt=negative_prompt, guidance_scale=guidance_scale,
                                 **embeds)
    out = mixing.sample(denoiser, big, sigmas, prediction=prediction, schedule=settings.schedule, alpha_1=settings.alpha_1,
                        sampler=settings.sampler, blend=settings.blend, seed=seed, cleanup=settings.cleanup,
                        disable=not progress)
    images = None if output_type == "latent" else decode(pipe, out, output_type)
    return MixingUpscaleOutput(images, out, latents, settings)
