"""Blending schedules: how much of the noised copy of the reference is mixed in before each sampler step.

Every schedule returns ``c1[k]``, the weight of the **noised copy** z'_k before step k (DemoFusion's orientation);
the sampler's own latent gets ``1 - c1[k]``. With S steps, progress is measured inside the blending window
``[start, stop]`` (fractions of the steps)::

    p_k = clamp((k / S - start) / (stop - start), 0, 1)

so c1 keeps its first value before ``start``, and ``stop > 1`` stretches the curve so the copy is mixed in until the
very last step. Then ``c1 = clamp(f(p), minimum, maximum)`` with

* ``cosine``: DemoFusion's skip-residual weight in its corrected form, ``f = ((1 + cos(pi p)) / 2) ** alpha_1``
  = ``cos(pi p / 2) ** (2 alpha_1)``: 1 at the first step, falling to 0; a larger alpha_1 lets go of the copy sooner.
  (Read literally with diffusion timesteps t = T..0 the published formula runs the other way: 0 first, 1 last.)
* ``cosine_mixer``: the curve of ComfyUI-Iterative-Mixer, which hands ``w = ((1 + cos(pi (1 - p))) / 2) ** alpha_1``
  to the *sampler's* latent, so the copy gets ``f = 1 - sin(pi p / 2) ** (2 alpha_1)``. It equals ``cosine`` only
  for alpha_1 = 1; for alpha_1 > 1 it mixes in far more of the copy, and a larger alpha_1 mixes in *more*.
  Here to reproduce workflows made with that node pack.
* ``linear``: ``f = 1 - p`` (alpha_1 unused).
* ``logistic``: a sigmoid centred at p = 1/2 with steepness ``k = 5 alpha_1`` (the Iterative Mixer's constant),
  rescaled to run exactly from 1 to 0: ``f = (s(k (1/2 - p)) - s(-k/2)) / (s(k/2) - s(-k/2))``.
"""

from __future__ import annotations

import math

import torch

from .. import limits
from ..errors import InputError

SCHEDULES = ("cosine", "cosine_mixer", "linear", "logistic")


def _cosine(p: torch.Tensor, alpha_1: float) -> torch.Tensor:
    return ((1 + torch.cos(math.pi * p)) / 2) ** alpha_1


def _cosine_mixer(p: torch.Tensor, alpha_1: float) -> torch.Tensor:
    return 1 - _cosine(1 - p, alpha_1)


def _linear(p: torch.Tensor, alpha_1: float) -> torch.Tensor:
    return 1 - p


def _logistic(p: torch.Tensor, alpha_1: float) -> torch.Tensor:
    k = 5.0 * alpha_1
    lo, hi = torch.sigmoid(torch.tensor(-k / 2, dtype=p.dtype)), torch.sigmoid(torch.tensor(k / 2, dtype=p.dtype))
    return (torch.sigmoid(k * (0.5 - p)) - lo) / (hi - lo)


_CURVES = {"cosine": _cosine, "cosine_mixer": _cosine_mixer, "linear": _linear, "logistic": _logistic}


def schedule(
    name: str,
    steps: int,
    *,
    alpha_1: float = 3.0,
    start: float = 0.0,
    stop: float = 1.0,
    minimum: float = 0.0,
    maximum: float = 1.0,
) -> torch.Tensor:
    """Weight of the noised copy before each of ``steps`` sampler steps (float32 tensor of length ``steps``)."""
    if name not in _CURVES:
        raise InputError(f"unknown blending schedule {name!r}: use one of {', '.join(SCHEDULES)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive integer (the sampler's number of steps); got {steps!r}")
    limits.check_steps(steps)
    for option, value in {"alpha_1": alpha_1, "start": start, "stop": stop, "minimum": minimum, "maximum": maximum}.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{option}={value!r} is not a number")
    if not (math.isfinite(alpha_1) and alpha_1 > 0):
        raise InputError(f"alpha_1 must be > 0 (DemoFusion uses 3; larger lets go of the noised copy sooner); got {alpha_1}")
    if not (math.isfinite(start) and 0.0 <= start < 1.0):
        raise InputError(f"start is a fraction of the steps in [0, 1); got {start}")
    if not (math.isfinite(stop) and stop > start):
        raise InputError(f"stop must be a fraction greater than start ({start}); values above 1 stretch the curve; got {stop}")
    if not (0.0 <= minimum <= maximum <= 1.0):
        raise InputError(f"need 0 <= minimum <= maximum <= 1 for the weight clamps; got minimum={minimum}, maximum={maximum}")
    k = torch.arange(steps, dtype=torch.float64)
    p = ((k / steps - start) / (stop - start)).clamp(0.0, 1.0)
    return _CURVES[name](p, float(alpha_1)).clamp(minimum, maximum).float()


def as_weights(weights: str | torch.Tensor | list[float] | tuple[float, ...], steps: int, **options: float) -> torch.Tensor:
    """A schedule by name (with ``options``) or explicit per-step weights, checked against ``steps``."""
    if isinstance(weights, str):
        return schedule(weights, steps, **options)
    w = torch.as_tensor(weights, dtype=torch.float32).detach().cpu()
    if w.ndim != 1 or w.numel() != steps:
        raise InputError(f"the blending schedule has {w.numel()} weights but the sampler takes {steps} steps "
                         f"(len(sigmas) - 1): give one weight per step, e.g. mixing.schedule(name, {steps})")
    if not bool(((w >= 0) & (w <= 1)).all()):
        raise InputError("blending weights must lie in [0, 1] (the share of the noised copy)")
    return w
