"""k-diffusion-style samplers over a denoiser ``model(x, sigma * s_in, **extra_args) -> x0``, and the mixing sampler.

Every sampler is a function ``(model, x, sigmas, extra_args=None, callback=None, disable=None, *, ...) -> x``;
``sigmas`` run from sigma_0 down to sigma_S (usually 0) and x starts at sigma_0. ``before_step(x, i) -> x`` is an
explicit hook that returns the latent step i starts from: the mixing sampler blends in the noised copy there,
at exactly the sigma the step then evaluates the model at. The callback only observes
``{x, i, sigma, sigma_hat, denoised}``, x being the latent the model was evaluated on.

Steps are written for ``x = alpha(sigma) z + sigma eps`` (see :mod:`.process`), so one function serves eps, v and
flow models. Euler is the same update for both processes (it equals DDIM in the x0 parameterisation), which is why
``flow_euler`` is Euler on a flow-matching schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import trange

from ..errors import InputError
from . import noise as _noise
from .blending import blend as _blend
from .blending import check_blend
from .process import VE, ForwardProcess, accepts_kind, check_sigmas, process_for
from .schedules import as_weights
from .unsampler import NoisedBatch, Unsampler

Model = Callable[..., torch.Tensor]
Hook = Callable[[torch.Tensor, int], torch.Tensor]
Callback = Callable[[dict[str, Any]], None]


Step = Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]


def _loop(model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Mapping | None, callback: Callback | None,
          disable: bool | None, before_step: Hook | None, step: Step) -> torch.Tensor:
    """The loop every sampler shares: hook, model, callback, then ``x = step(x, denoised, sigma, sigma_next)``."""
    extra = dict(extra_args or {})
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.double().tolist()
    for i in trange(len(sig) - 1, disable=disable):
        if before_step is not None:
            x = before_step(x, i)
        denoised = model(x, sigmas[i].to(x.device, x.dtype) * s_in, **extra)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = step(x, denoised, sig[i], sig[i + 1])
    return x


def _ddim(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """First-order step (Euler = DDIM): ``denoised + (sigma_next / sigma) (x - denoised)``, for ve and flow."""
    return torch.lerp(denoised, x, sigma_next / sigma)


@torch.no_grad()
def sample_euler(model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Mapping | None = None,
                 callback: Callback | None = None, disable: bool | None = None, *,
                 before_step: Hook | None = None) -> torch.Tensor:
    """Euler steps on the probability-flow ODE (Karras et al. 2022, Algorithm 2 without churn)."""
    return _loop(model, x, sigmas, extra_args, callback, disable, before_step, _ddim)


@torch.no_grad()
def sample_euler_ancestral(model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Mapping | None = None,
                           callback: Callback | None = None, disable: bool | None = None, *,
                           process: ForwardProcess = VE, eta: float = 1.0, s_noise: float = 1.0,
                           seed: int = 0, noise_sampler: Callable[[float, float], torch.Tensor] | None = None,
                           before_step: Hook | None = None) -> torch.Tensor:
    """Euler ancestral: step down past sigma_next, then add fresh noise back up to it (DDPM-like for eta = 1).

    In the variance-exploding coordinates x / alpha this is k-diffusion's ``get_ancestral_step``; written as
    ``x_next = alpha_n D + sigma_n (sqrt(1 - u^2) eps_hat + u s_noise xi)`` it also holds for flow models
    (eps_hat = (x - alpha D) / sigma is the model's noise estimate, u = min(1, eta sqrt(1 - q^2)), q the ratio of
    the two levels' sigma / alpha). Noise comes from ``seed`` unless a ``noise_sampler`` is given.
    """
    sample_noise = noise_sampler or _noise.noise_sampler(x, seed)

    def step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
        if sigma_next == 0:
            return denoised
        alpha, alpha_n = process.alpha(sigma), process.alpha(sigma_next)
        q = sigma_next * alpha / (sigma * alpha_n)
        u = min(1.0, eta * math.sqrt(max(0.0, 1 - q * q)))
        eps_hat = (x - alpha * denoised) / sigma
        fresh = sample_noise(sigma, sigma_next)
        return alpha_n * denoised + sigma_next * (math.sqrt(1 - u * u) * eps_hat + (u * s_noise) * fresh)

    return _loop(model, x, sigmas, extra_args, callback, disable, before_step, step)


def _lambda(process: ForwardProcess, sigma: float) -> float:
    """Half log-SNR ``log(alpha / sigma)``; -inf where alpha = 0 (flow at sigma = 1)."""
    alpha = process.alpha(sigma)
    return math.log(alpha) - math.log(sigma) if alpha > 0 else -math.inf


@torch.no_grad()
def sample_dpmpp_2m(model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Mapping | None = None,
                    callback: Callback | None = None, disable: bool | None = None, *,
                    process: ForwardProcess = VE,
                    before_step: Hook | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) in the half log-SNR of the model's own forward process."""
    history: dict[str, Any] = {"denoised": None, "h": math.nan}  # the previous step's, for the 2nd-order term

    def step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
        if sigma_next == 0:
            return denoised
        h = _lambda(process, sigma_next) - _lambda(process, sigma)
        d = denoised
        if history["denoised"] is not None and math.isfinite(h) and math.isfinite(history["h"]):
            r = history["h"] / h
            d = denoised * (1 + 1 / (2 * r)) - history["denoised"] * (1 / (2 * r))
        history.update(denoised=denoised, h=h)
        ratio = sigma_next / sigma
        return x * ratio + d * (process.alpha(sigma_next) - process.alpha(sigma) * ratio)

    return _loop(model, x, sigmas, extra_args, callback, disable, before_step, step)


SAMPLERS = ("euler", "euler_ancestral", "dpmpp_2m", "flow_euler")


def check_sampler(name: str, prediction: str) -> str:
    if name not in SAMPLERS:
        raise InputError(f"unknown sampler {name!r}: use one of {', '.join(SAMPLERS)}")
    if name == "flow_euler" and prediction != "flow":
        raise InputError(f"flow_euler is for flow-matching models, but prediction is {prediction!r}: use 'euler'")
    return name


@accepts_kind
def run_sampler(name: str, model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Mapping | None = None,
                callback: Callback | None = None, disable: bool | None = None, *, prediction: str = "eps", eta: float = 1.0,
                s_noise: float = 1.0, seed: int = 0, noise_stream: int = _noise.ANCESTRAL,
                before_step: Hook | None = None) -> torch.Tensor:
    """Run the sampler called ``name`` for a model of ``prediction``; ``seed`` feeds the ancestral noise."""
    check_sampler(name, prediction)
    for label, value in (("eta", eta), ("s_noise", s_noise)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise InputError(f"{label}={value!r} is not a finite number >= 0 (1 is the usual ancestral noise, 0 none)")
    process = process_for(prediction)
    if name == "euler_ancestral":
        return sample_euler_ancestral(model, x, sigmas, extra_args, callback, disable, process=process, eta=eta,
                                      s_noise=s_noise, noise_sampler=_noise.noise_sampler(x, seed, noise_stream),
                                      before_step=before_step)
    if name == "dpmpp_2m":
        return sample_dpmpp_2m(model, x, sigmas, extra_args, callback, disable, process=process, before_step=before_step)
    return sample_euler(model, x, sigmas, extra_args, callback, disable, before_step=before_step)


def _as_noised(noised: Unsampler | NoisedBatch | torch.Tensor, x: torch.Tensor, sigmas: torch.Tensor,
               steps: int) -> Unsampler | NoisedBatch:
    """Check that the noised copies fit the sampler: one per step, x's shape, and the sampler's own sigmas."""
    if isinstance(noised, torch.Tensor):
        if noised.shape[0] != steps * x.shape[0]:
            raise InputError(f"the noised batch holds {noised.shape[0]} latents but the sampler runs {steps} steps on a "
                             f"batch of {x.shape[0]} (needs {steps * x.shape[0]}): unsample with steps={steps}, or "
                             f"pass sigmas with {noised.shape[0] // max(1, x.shape[0]) + 1} entries")
        noised = NoisedBatch(noised, steps)
    if len(noised) != steps:
        raise InputError(f"{len(noised)} noised copies for {steps} sampler steps: unsample at the sampler's sigmas "
                         f"without the final one (sigmas[:-1], {steps} values)")
    if tuple(noised.shape) != tuple(x.shape):
        raise InputError(f"the noised copies have shape {tuple(noised.shape)} but the latent being sampled "
                         f"{tuple(x.shape)}: unsample the same (upscaled) latent the sampler starts from")
    own = getattr(noised, "sigmas", None)
    if own is not None and not torch.allclose(own, sigmas[:steps].double().cpu(), rtol=1e-4, atol=1e-6):
        raise InputError("the noised copies were made at other sigmas than the sampler's (for instance a different "
                         "denoise or scheduler): unsample at exactly sigmas[:-1] of this sampler")
    return noised


class MixingHook:
    """DemoFusion's skip residual as a ``before_step`` hook: ``hook(x, i)`` blends the latent step ``i`` starts from
    with the noised copy at sigma_i, the copy's share being ``weights[i]``; a zero weight returns ``x`` itself.

    Hosts that drive their own samplers call it once per sigma transition, on the sampler's state.
    """

    def __init__(self, copies: Unsampler | NoisedBatch, weights: list[float], blend: str) -> None:
        self.copies, self.weights, self.blend = copies, weights, blend

    def __len__(self) -> int:
        return len(self.weights)

    def __call__(self, x: torch.Tensor, i: int) -> torch.Tensor:
        w = self.weights[i]
        return x if w == 0 else _blend(x, self.copies[i], w, self.blend)


@accepts_kind
def mixing_hook(noised: Unsampler | NoisedBatch | torch.Tensor, x: torch.Tensor, sigmas: torch.Tensor,
                weights: str | torch.Tensor | Sequence[float] = "cosine", *, alpha_1: float = 3.0, blend: str = "lerp",
                prediction: str = "eps") -> MixingHook:
    """The checked :class:`MixingHook` for a sampler running ``sigmas`` from ``x``: one noised copy per step at
    exactly ``sigmas[:-1]``, of ``x``'s shape, and one weight per step (a schedule name with ``alpha_1``, or values)."""
    sigmas = check_sigmas(sigmas, prediction)
    steps = len(sigmas) - 1
    check_blend(blend)
    copies = _as_noised(noised, x, sigmas, steps)
    return MixingHook(copies, as_weights(weights, steps, alpha_1=alpha_1).tolist(), blend)


@accepts_kind
@torch.no_grad()
def sample_mixing(model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Mapping | None = None,
                  callback: Callback | None = None, disable: bool | None = None, *,
                  noised: Unsampler | NoisedBatch | torch.Tensor,
                  weights: str | torch.Tensor | Sequence[float] = "cosine", alpha_1: float = 3.0,
                  sampler: str = "euler", blend: str = "lerp", prediction: str = "eps", eta: float = 1.0,
                  s_noise: float = 1.0, seed: int | None = None) -> torch.Tensor:
    """Iterative mixing (DemoFusion's skip residual): before step k, ``x <- blend(x, noised[k], weights[k])``.

    ``noised[k]`` is the reference noised to ``sigmas[k]``, the level step k evaluates the model at (an
    :class:`Unsampler`, a :class:`NoisedBatch` or a step-major batch tensor). ``weights`` is a schedule name
    (with ``alpha_1``) or one weight per step, each the noised copy's share. ``seed`` (default
    ``extra_args['seed']`` or 0) feeds the ancestral sampler's noise.
    """
    check_sampler(sampler, prediction)
    mix = mixing_hook(noised, x, sigmas, weights, alpha_1=alpha_1, blend=blend, prediction=prediction)
    seed = int((extra_args or {}).get("seed", 0)) if seed is None else seed
    return run_sampler(sampler, model, x, sigmas, extra_args, callback, disable, prediction=prediction, eta=eta, s_noise=s_noise,
                       seed=seed, before_step=mix)
