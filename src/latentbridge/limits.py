"""Size limits, checked from shapes before anything is allocated, and the refusal of empty tensors.

A typo such as a scale of 1e6 would otherwise ask the allocator for petabytes and die with a torch error; an empty
tensor (a 0x0 latent, an empty batch) would fail deep inside a convolution. The settings are read when called:

* ``LATENTBRIDGE_MAX_PIXELS`` (default 268435456, a 16384x16384 picture): the most image pixels one call may
  produce, every image of a batch and every frame of a video together; a latent result counts the pixels of the
  image it stands for;
* ``LATENTBRIDGE_MAX_STEPS`` (default 100000): the most steps a schedule may have.
"""

from __future__ import annotations

import math
import os

import torch

from .errors import InputError

ENV_MAX_PIXELS = "LATENTBRIDGE_MAX_PIXELS"
ENV_MAX_STEPS = "LATENTBRIDGE_MAX_STEPS"
DEFAULT_MAX_PIXELS = 16384 * 16384
DEFAULT_MAX_STEPS = 100_000


def max_pixels() -> int:
    """The most image pixels one call may produce (``LATENTBRIDGE_MAX_PIXELS``)."""
    return setting(ENV_MAX_PIXELS, DEFAULT_MAX_PIXELS)


def max_steps() -> int:
    """The most steps a schedule may have (``LATENTBRIDGE_MAX_STEPS``)."""
    return setting(ENV_MAX_STEPS, DEFAULT_MAX_STEPS)


def setting(name: str, default: int | float) -> int | float:
    """The environment variable ``name`` as a number above 0 (a whole number >= 1 where ``default`` is an int), read
    when called; ``default`` when it is unset; :class:`InputError` naming the variable otherwise."""
    text = os.environ.get(name, "").strip().replace("_", "")
    if not text:
        return default
    whole = isinstance(default, int)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    fits = math.isfinite(value) and (value >= 1 and value == int(value) if whole else value > 0)
    if not fits:
        raise InputError(f"${name}={os.environ[name]!r} is not {'a whole number >= 1' if whole else 'a number > 0'}; "
                         f"unset it to use {default}")
    return int(value) if whole else value


def check_whole(name: str, value: object, *, unit: str = "", minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` when it is a whole number (not a bool) from ``minimum`` to ``maximum``; else an :class:`InputError`
    that names the parameter ``name`` and, where given, what it counts (``unit``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        what = f" of {unit}" if unit else ""
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise InputError(f"{name}={value!r} is not a whole number{what} {bounds}")
    return value


def check_pixels(count: int, height: int, width: int, *, what: str, fix: str) -> None:
    """Refuse a result of ``count`` images of ``height`` x ``width`` pixels above :func:`max_pixels`.

    ``what`` names the result ("the upscaled latent"), ``fix`` the parameters that make it smaller ("a smaller
    scale= or size=").
    """
    total = count * height * width
    limit = max_pixels()
    if total > limit:
        images = f"{count} images of " if count != 1 else ""
        raise InputError(f"{what} would stand for {images}{width}x{height} pixels ({total:,} in all), above the limit "
                         f"of {limit:,} set by ${ENV_MAX_PIXELS}: {fix}, or raise the limit with ${ENV_MAX_PIXELS}")


def check_steps(steps: int, *, what: str = "steps") -> None:
    """Refuse a schedule longer than :func:`max_steps`; ``what`` names the parameter."""
    limit = max_steps()
    if steps > limit:
        raise InputError(f"{what}={steps} is above the limit of {limit:,} steps set by ${ENV_MAX_STEPS}: use fewer, "
                         f"or raise the limit with ${ENV_MAX_STEPS}")


def items(tensor: torch.Tensor) -> int:
    """How many pictures a (B, C, H, W) or (B, C, T, H, W) tensor stands for: its batch times its frames."""
    return 1 if tensor.ndim < 4 else tensor.shape[0] * math.prod(tensor.shape[2:-2])


def check_not_empty(tensor: torch.Tensor, what: str = "the latent") -> None:
    """Refuse a tensor with a zero-length dimension (a 0x0 latent or image, an empty batch) with its shape."""
    if isinstance(tensor, torch.Tensor) and tensor.numel() == 0:
        raise InputError(f"{what} is empty (shape {tuple(tensor.shape)}): it needs at least one batch item of at "
                         "least 1x1 pixels")
