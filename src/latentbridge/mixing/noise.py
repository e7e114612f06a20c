"""Reproducible noise: every draw comes from its own CPU generator seeded by (seed, stream, index).

Drawing on the CPU and moving the result makes a seed give the same noise on every device. Streams keep the
unsampler's noise, the ancestral sampler's noise and the clean-up pass's noise independent of each other.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import InputError

UNSAMPLE, ANCESTRAL, CLEANUP_RENOISE, CLEANUP_ANCESTRAL = range(4)  # stream ids


def check_seed(seed: int) -> int:
    """A seed is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer; got {seed!r}")
    return int(seed)


def derive_seed(seed: int, *path: int) -> int:
    """A 63-bit generator seed for ``(seed, *path)``, statistically independent of every other path."""
    words = np.random.SeedSequence([check_seed(seed), *path]).generate_state(2, np.uint32)
    return (int(words[0]) << 31 | int(words[1]) >> 1) & (2**63 - 1)


def randn(like: torch.Tensor, seed: int, *path: int) -> torch.Tensor:
    """Standard normal noise shaped like ``like`` (same device and dtype), drawn for ``(seed, *path)``."""
    gen = torch.Generator("cpu").manual_seed(derive_seed(seed, *path))
    return torch.randn(like.shape, generator=gen, dtype=torch.float32).to(like.device, like.dtype)


def noise_sampler(like: torch.Tensor, seed: int, stream: int = ANCESTRAL) -> Callable[[float, float], torch.Tensor]:
    """A k-diffusion-style ``noise_sampler(sigma, sigma_next)``: call n draws ``(seed, stream, n)``."""
    count = iter(range(2**62))

    def sample(sigma: float, sigma_next: float) -> torch.Tensor:
        return randn(like, seed, stream, next(count))

    return sample
