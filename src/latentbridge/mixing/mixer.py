"""The whole recipe over a plain denoiser: unsample the reference, mix-sample, optionally clean up at low denoise."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .. import limits, spaces
from ..errors import InputError
from . import noise as _noise
from .process import accepts_kind, check_sigmas, process_for
from .samplers import Callback, run_sampler, sample_mixing
from .schedules import as_weights
from .unsampler import Unsampler

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _k_model(denoiser: Denoise) -> Callable[..., torch.Tensor]:
    """Adapt ``denoiser(x, sigma)`` (sigma a 0-d tensor) to the k-diffusion call ``model(x, sigma * s_in)``; what it
    returns must be a tensor of the latent's shape."""

    def model(x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        x0 = denoiser(x, sigma[0])
        if not isinstance(x0, torch.Tensor) or x0.shape != x.shape:
            got = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
            raise InputError(f"the denoiser returned {got} for a latent of shape {tuple(x.shape)}: it must return "
                             "the x0 estimate, a tensor of the latent's shape")
        return x0

    return model


def cleanup_sigmas(sigmas: torch.Tensor, strength: float) -> torch.Tensor:
    """The tail of ``sigmas`` covering the last ``strength`` of its steps (at least one step)."""
    if not 0.0 < strength <= 1.0:
        raise InputError(f"the clean-up strength is a fraction of the steps in (0, 1] (0.05-0.25 is typical); got {strength}")
    steps = len(sigmas) - 1
    n = max(1, round(steps * strength))
    return sigmas[-(n + 1):]


@accepts_kind
@torch.no_grad()
def refine(denoiser: Denoise, latent: torch.Tensor, sigmas: torch.Tensor | Sequence[float], *, prediction: str = "eps",
           sampler: str = "euler", seed: int = 0, eta: float = 1.0, callback: Callback | None = None,
           disable: bool | None = None) -> torch.Tensor:
    """Clean-up pass: noise a finished model-domain latent to ``sigmas[0]`` with fresh noise and sample it again.

    Run at low denoise (the tail of a schedule) it removes the grain that mixing can leave.
    """
    limits.check_not_empty(latent)
    sig = check_sigmas(sigmas, prediction).to(latent.device)
    start = process_for(prediction).add_noise(latent, _noise.randn(latent, seed, _noise.CLEANUP_RENOISE), float(sig[0]))
    return run_sampler(sampler, _k_model(denoiser), start, sig, None, callback, disable, prediction=prediction, eta=eta, seed=seed,
                       noise_stream=_noise.CLEANUP_ANCESTRAL)


@accepts_kind
@torch.no_grad()
def sample(
    denoiser: Denoise,
    reference: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    prediction: str = "eps",
    schedule: str | torch.Tensor | Sequence[float] = "cosine",
    alpha_1: float = 3.0,
    start: float = 0.0,
    stop: float = 1.0,
    minimum: float = 0.0,
    maximum: float = 1.0,
    sampler: str = "euler",
    blend: str = "lerp",
    seed: int = 0,
    noise: torch.Tensor | None = None,
    shared_noise: bool = True,
    eta: float = 1.0,
    cleanup: float = 0.0,
    callback: Callback | None = None,
    disable: bool | None = None,
) -> torch.Tensor:
    """Iterative mixing from a clean (upscaled) model-domain ``reference``; returns the model-domain result.

    ``denoiser(x, sigma)`` returns the x0 estimate (sigma is a 0-d tensor). The reference is noised to every
    sigma of the schedule with the forward process of ``prediction`` (eps/v: ``z + sigma eps``, flow:
    ``(1 - sigma) z + sigma eps``), the sampler starts from the copy at sigma_0, and before step k the latent is
    blended with the copy at sigma_k using weight ``schedule[k]`` (a name from :mod:`.schedules` with
    ``alpha_1/start/stop/minimum/maximum``, or one weight per step). ``cleanup > 0`` re-runs the last ``cleanup``
    of the schedule from fresh noise without mixing. Runs with the same arguments repeat exactly.
    """
    if not isinstance(reference, torch.Tensor) or not spaces.check_tensor(reference, "reference").is_floating_point():
        raise InputError("the reference must be a floating-point latent tensor in the model domain")
    if not callable(denoiser):
        raise InputError(f"denoiser= is a function (x, sigma) -> x0 estimate; got {type(denoiser).__name__}")
    if callback is not None and not callable(callback):
        raise InputError(f"callback= is a function called after each step, or None; got {type(callback).__name__}")
    limits.check_not_empty(reference, "the reference")
    sig = check_sigmas(sigmas, prediction).to(reference.device)
    steps = len(sig) - 1
    weights = as_weights(schedule, steps, alpha_1=alpha_1, start=start, stop=stop, minimum=minimum, maximum=maximum)
    copies = Unsampler(reference, sig[:-1], prediction=prediction, seed=seed, shared_noise=shared_noise, noise=noise)
    x = sample_mixing(_k_model(denoiser), copies[0], sig, None, callback, disable, noised=copies, weights=weights,
                      sampler=sampler, blend=blend, prediction=prediction, eta=eta, seed=seed)
    if cleanup:
        x = refine(denoiser, x, cleanup_sigmas(sig, cleanup), prediction=prediction, sampler=sampler, seed=seed, eta=eta,
                   disable=disable)
    return x
