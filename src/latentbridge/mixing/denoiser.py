"""One adapter from a network's raw prediction (eps, v or flow velocity) to the denoiser ``D(x, sigma) -> x0``.

The samplers work on model-domain latents ``x = alpha(sigma) z + sigma eps`` and only ever see D (the idea of
k-diffusion's ``external.py``); this is the one place that knows how each prediction is parameterised.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .process import process_for

Net = Callable[..., torch.Tensor]


class Denoiser:
    """``D(x, sigma, **extra) -> x0`` for ``net(x_in, t, **extra) -> prediction`` of prediction eps, v or flow.

    eps and v models take the variance-preserving input ``x / sqrt(1 + sigma^2)``; flow models take ``x``.
    ``timestep(sigma) -> t`` maps the (B,) sigmas to the network's time input (the training timestep for
    diffusers UNets, ``1000 sigma`` for SD3, ``sigma`` for FLUX); identity by default.
    """

    def __init__(self, net: Net, prediction: str, *, timestep: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        process_for(prediction)
        self.net, self.prediction = net, prediction
        self.timestep = timestep or (lambda sigma: sigma)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        if s.numel() == 1:
            s = s.expand(x.shape[0])
        t = self.timestep(s)
        s = s.view(-1, *(1,) * (x.ndim - 1))
        if self.prediction == "flow":
            return x - s * self.net(x, t, **extra)
        c_in = (s * s + 1).rsqrt()
        out = self.net(x * c_in, t, **extra)
        if self.prediction == "eps":
            return x - s * out
        return x * c_in * c_in - s * c_in * out  # v: x0 = x / (1 + s^2) - s v / sqrt(1 + s^2)
