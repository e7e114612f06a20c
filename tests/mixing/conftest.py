"""A Gaussian data distribution whose optimal denoiser and probability-flow solution are closed form."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch


@dataclass(frozen=True)
class Gaussian:
    """Data z ~ N(mu, std^2) per element, noised as x = alpha(sigma) z + sigma eps."""

    mu: float = 0.5
    std: float = 0.3

    @staticmethod
    def alpha(sigma: float, prediction: str) -> float:
        return 1.0 - sigma if prediction == "flow" else 1.0

    def denoiser(self, prediction: str, calls: list | None = None):
        """E[z | x] at noise level sigma; records (x, sigma) in ``calls`` when given."""
        var = self.std**2

        def d(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            if calls is not None:
                calls.append((x.clone(), float(sigma)))
            a = self.alpha(float(sigma), prediction)
            return self.mu + a * var / (a * a * var + float(sigma) ** 2) * (x - a * self.mu)

        return d

    def ode_solution(self, x_start: torch.Tensor, sigma_start: float, prediction: str) -> torch.Tensor:
        """Where the probability-flow ODE takes x_start at sigma_start when it reaches sigma = 0 (a monotone affine map)."""
        a = self.alpha(sigma_start, prediction)
        return self.mu + self.std * (x_start - a * self.mu) / math.sqrt(a * a * self.std**2 + sigma_start**2)

    def sample(self, *shape: int, seed: int = 1) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return self.mu + self.std * torch.randn(*shape, generator=gen)


def ve_sigmas(steps: int, high: float = 80.0, low: float = 0.01) -> torch.Tensor:
    """Log-spaced variance-exploding schedule ending in 0."""
    return torch.cat([torch.exp(torch.linspace(math.log(high), math.log(low), steps)), torch.zeros(1)])


def flow_sigmas(steps: int) -> torch.Tensor:
    """Linear flow-matching schedule from 1 to 0."""
    return torch.linspace(1.0, 0.0, steps + 1)


def sigmas_for(prediction: str, steps: int) -> torch.Tensor:
    return flow_sigmas(steps) if prediction == "flow" else ve_sigmas(steps)


@pytest.fixture
def gaussian() -> Gaussian:
    return Gaussian()
