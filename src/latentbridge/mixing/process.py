"""Forward (noising) processes in the model domain: how a clean latent z is brought to noise level sigma.

* ``ve`` (variance exploding, k-diffusion's form) for epsilon- and v-prediction models: ``x = z + sigma * eps``.
  A diffusers/ComfyUI UNet sees ``x / sqrt(1 + sigma**2)``; samplers and the unsampler work on ``x`` itself.
* ``flow`` (rectified flow) for flow-matching models (SD3, FLUX, Sana, ...): ``x = (1 - sigma) * z + sigma * eps``,
  with ``sigma`` in [0, 1].

Both are ``x = alpha(sigma) * z + sigma * eps``; samplers that need ``alpha`` take the process, never the model type.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from .. import spaces
from ..errors import InputError

PREDICTIONS = spaces.PREDICTIONS
F = TypeVar("F", bound=Callable)


def accepts_kind(fn: F) -> F:
    """Let ``fn`` still take ``kind=``, the deprecated name of ``prediction=``, with a DeprecationWarning."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "kind" in kwargs:
            if "prediction" in kwargs:
                raise InputError("pass prediction= alone: kind= is its deprecated name")
            warnings.warn(f"{fn.__qualname__.removesuffix('.__init__')}(kind=) is deprecated: pass prediction=",
                          DeprecationWarning, stacklevel=2)
            kwargs["prediction"] = kwargs.pop("kind")
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class ForwardProcess:
    """``x = alpha(sigma) * z + sigma * eps`` for one family of models."""

    name: str  # "ve" or "flow"

    def alpha(self, sigma: float) -> float:
        """Scale of the clean latent at noise level ``sigma``."""
        return 1.0 - sigma if self.name == "flow" else 1.0

    def add_noise(self, z: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
        """The clean model-domain latent ``z`` noised to ``sigma`` with the standard normal ``noise``."""
        if self.name == "flow":
            return torch.lerp(z, noise, sigma)  # (1 - s) z + s e, exactly e at s = 1
        return torch.add(z, noise, alpha=sigma)


VE = ForwardProcess("ve")
FLOW = ForwardProcess("flow")


def process_for(prediction: str) -> ForwardProcess:
    """The forward process of a model that predicts ``prediction`` (eps, v or flow)."""
    if prediction not in PREDICTIONS:
        raise InputError(f"unknown prediction {prediction!r}: use 'eps' or 'v' (z + sigma*eps noising) or 'flow' "
                         "((1 - sigma)*z + sigma*eps, for SD3/FLUX-class models)")
    return FLOW if prediction == "flow" else VE


def prediction_of(space: str | spaces.LatentSpace) -> spaces.Prediction:
    """The prediction (eps, v or flow) the registry records for ``space``."""
    return spaces.get(space).prediction


def check_sigmas(sigmas: torch.Tensor | Sequence[float], prediction: str, *, what: str = "sigmas") -> torch.Tensor:
    """Validate a sampler schedule (strictly decreasing, >= 0, <= 1 for flow, >= 2 entries); returns it as a tensor."""
    try:
        sig = torch.as_tensor(sigmas).detach()
    except (TypeError, ValueError, RuntimeError):  # text, ragged lists, None
        raise InputError(f"{what} must be a 1-D schedule of numbers (a tensor or a list of floats); got "
                         f"{type(sigmas).__name__} {sigmas!r:.60}") from None
    if sig.is_complex() or sig.dtype == torch.bool or sig.device.type == "meta":
        raise InputError(f"{what} must be real numbers with values; got {sig.dtype} on {sig.device}")
    if sig.ndim != 1 or sig.numel() < 2:
        raise InputError(f"{what} must be a 1-D schedule with at least 2 entries (sigma_0 ... sigma_S, usually ending "
                         f"in 0); got shape {tuple(sig.shape)}")
    values = sig.double().tolist()
    if not all(math.isfinite(v) for v in values) or min(values) < 0:
        raise InputError(f"{what} must be finite and >= 0; got {values}")
    if any(b >= a for a, b in itertools.pairwise(values)):
        raise InputError(f"{what} must be strictly decreasing (noisiest first); got {values}: sort them descending "
                         "and drop repeated entries")
    if prediction == "flow" and values[0] > 1:
        raise InputError(f"flow-matching sigmas lie in [0, 1], but {what} start at {values[0]:g}: pass the model's "
                         "flow schedule, or prediction='eps' for a variance-exploding model")
    return sig
