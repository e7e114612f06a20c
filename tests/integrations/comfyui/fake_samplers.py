"""ComfyUI's sampler registry in small, on top of fake_comfy.py: ``comfy.samplers.sampler_object`` / ``KSampler``,
``comfy.sample.prepare_noise``, ``comfy.k_diffusion.sampling`` noise samplers and ``comfy.extra_samplers.uni_pc``.

The sampler functions are stand-ins with the shapes that matter to the mixing nodes (ComfyUI 0.8): ``euler`` and a
two-point multistep ``dpmpp_2m`` evaluate once per step on their state, ``euler_ancestral`` draws from a
``noise_sampler`` it makes from the seed unless given one, ``heun`` evaluates twice per step, and ``uni_pc`` keeps its
state divided by sqrt(1 + sigma^2), calling ``UniPC.multistep_uni_pc_update`` once per transition with a corrector
evaluation inside. They are not ComfyUI's numerics; real ComfyUI runs are in the acceptance workflows.
"""

from __future__ import annotations

import sys
import types

import torch
from tests.integrations.comfyui import fake_comfy

SAMPLER_NAMES = ["euler", "euler_ancestral", "heun", "dpmpp_2m", "dpm_2", "sa_solver", "uni_pc"]
DISCARD_PENULTIMATE = {"dpm_2", "uni_pc"}


def default_noise_sampler(x, seed=None):
    generator = torch.Generator().manual_seed(0 if seed is None else seed + 1)
    return lambda sigma, sigma_next: torch.randn(x.shape, generator=generator)


def BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=None, cpu=True):
    return default_noise_sampler(x, seed)


def _d(x, denoised, sigma):
    return (x - denoised) / sigma


def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None):
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "denoised": denoised})
        x = x + _d(x, denoised, sigmas[i]) * (sigmas[i + 1] - sigmas[i])
    return x


def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None):
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    previous = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "denoised": denoised})
        d = _d(x, denoised, sigmas[i])
        step = d if previous is None else 1.5 * d - 0.5 * previous
        x, previous = x + step * (sigmas[i + 1] - sigmas[i]), d
    return x


def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                           noise_sampler=None):
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or default_noise_sampler(x, extra_args.get("seed"))
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "denoised": denoised})
        up = eta * 0.5 * sigmas[i + 1]
        down = (sigmas[i + 1] ** 2 - up ** 2) ** 0.5
        x = x + _d(x, denoised, sigmas[i]) * (down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * up
    return x


def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None):
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "denoised": denoised})
        d, dt = _d(x, denoised, sigmas[i]), sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = _d(x_2, model(x_2, sigmas[i + 1] * s_in, **extra_args), sigmas[i + 1])
            x = x + (d + d_2) / 2 * dt
    return x


def sample_dpm_2(model, x, sigmas, extra_args=None, callback=None, disable=None):
    return sample_heun(model, x, sigmas, extra_args, callback, disable)


def sample_sa_solver(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    return sample_dpmpp_2m(model, x, sigmas, extra_args, callback, disable)


def _scale(t):
    return (1 + t.reshape(-1)[0] ** 2).sqrt()


class UniPC:
    """A predictor-corrector in the solver's own scaling: state / sqrt(1 + sigma^2), one update per transition."""

    def __init__(self, model_fn):
        self.model_fn = model_fn

    def multistep_uni_pc_update(self, x, model_prev_list, t_prev_list, t, order, use_corrector=True):
        s = t_prev_list[-1]
        x_ve = x * _scale(s)
        x0 = model_prev_list[-1] if len(model_prev_list) < 2 else 1.5 * model_prev_list[-1] - 0.5 * model_prev_list[-2]
        x_t = (x0 + (t.reshape(-1)[0] / s.reshape(-1)[0]) * (x_ve - x0)) / _scale(t)
        if not use_corrector:
            return x_t, None
        model_t = self.model_fn(x_t, t)  # the corrector's evaluation, inside the step
        return x_t + 0.1 * (model_t - model_prev_list[-1]) / _scale(t), model_t

    def sample(self, x, timesteps, order=2, callback=None, disable_pbar=False):
        vec = lambda k: timesteps[k].expand(x.shape[0])  # noqa: E731
        model_prev_list, t_prev_list = [self.model_fn(x, vec(0))], [vec(0)]
        for k in range(1, len(timesteps)):
            x, model_x = self.multistep_uni_pc_update(x, model_prev_list, t_prev_list, vec(k), order,
                                                      use_corrector=k < len(timesteps) - 1)
            model_prev_list.append(model_x)
            t_prev_list.append(vec(k))
            if callback is not None:
                callback({"x": x, "i": k - 1, "denoised": model_prev_list[-2]})
        return x


def sample_unipc(model, noise, sigmas, extra_args=None, callback=None, disable=False):
    timesteps = sigmas[:]
    timesteps[-1] = 0.001  # ComfyUI's uni_pc writes into the sigmas it is given, as here
    extra_args = extra_args or {}

    def model_fn(x, t):
        return model(x * _scale(t), t, **extra_args)

    solver = sys.modules["comfy.extra_samplers.uni_pc"].UniPC(model_fn)  # looked up at call time, as ComfyUI's is
    return solver.sample(noise / _scale(timesteps[0]), timesteps, callback=callback) * _scale(timesteps[-1])


class KSAMPLER(fake_comfy.KSAMPLER):
    def __init__(self, sampler_function, extra_options=None, inpaint_options=None):
        super().__init__(sampler_function, extra_options)
        self.inpaint_options = dict(inpaint_options or {})


def sampler_object(name):
    if name == "uni_pc":
        return KSAMPLER(sample_unipc)
    return KSAMPLER(getattr(sys.modules["comfy.k_diffusion.sampling"], f"sample_{name}"))


class KSampler:
    SAMPLERS = SAMPLER_NAMES

    def __init__(self, model, steps, device, sampler=None, scheduler=None, denoise=None, model_options=None):
        total = steps if denoise is None or denoise > 0.9999 else int(steps / denoise)
        extra = int(sampler in DISCARD_PENULTIMATE)
        sigmas = fake_comfy.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, total + extra)
        if extra:
            sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
        self.sigmas = sigmas[-(steps + 1):]


def prepare_noise(latent_image, seed, noise_inds=None):
    return torch.randn(latent_image.shape, generator=torch.Generator().manual_seed(seed))


def plain_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise=1.0):
    """What ComfyUI's KSampler node computes, here: its noise, its sigmas, the plain sampler."""
    sigmas = KSampler(model, steps, "cpu", sampler_name, scheduler, denoise).sigmas
    return fake_comfy.sample_custom(model, prepare_noise(latent["samples"], seed), cfg, sampler_object(sampler_name),
                                    sigmas, positive, negative, latent["samples"], seed=seed)


def install(monkeypatch) -> None:
    """fake_comfy's modules plus the sampler registry above."""
    fake_comfy.install(monkeypatch)
    monkeypatch.setattr(fake_comfy.ModelPatcher, "model_options", {}, raising=False)
    samplers = sys.modules["comfy.samplers"]
    samplers.KSAMPLER, samplers.sampler_object, samplers.KSampler = KSAMPLER, sampler_object, KSampler
    sys.modules["comfy.sample"].prepare_noise = prepare_noise
    k_diffusion = types.ModuleType("comfy.k_diffusion")
    sampling = types.ModuleType("comfy.k_diffusion.sampling")
    for name, value in list(globals().items()):
        if (name.startswith("sample_") and name != "sample_unipc") or name.endswith("NoiseSampler") or \
                name == "default_noise_sampler":
            setattr(sampling, name, value)
    extra = types.ModuleType("comfy.extra_samplers")
    uni_pc = types.ModuleType("comfy.extra_samplers.uni_pc")
    uni_pc.UniPC, uni_pc.sample_unipc = UniPC, sample_unipc
    k_diffusion.sampling, extra.uni_pc = sampling, uni_pc
    comfy = sys.modules["comfy"]
    comfy.k_diffusion, comfy.extra_samplers = k_diffusion, extra
    for name, module in {"comfy.k_diffusion": k_diffusion, "comfy.k_diffusion.sampling": sampling,
                         "comfy.extra_samplers": extra, "comfy.extra_samplers.uni_pc": uni_pc}.items():
        monkeypatch.setitem(sys.modules, name, module)
