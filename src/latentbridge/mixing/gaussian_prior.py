"""A stationary Gaussian image prior whose denoiser is exact and closed form: a model that runs anywhere.

Images (or latents) are modelled per channel as a mean plus a Gaussian field with a power-law spectrum
``P(f) = A f^-beta`` (natural photos have beta near 2). The optimal denoiser E[z | x] is then a Wiener filter in
the Fourier domain, for either forward process. It draws plausible-looking texture, not objects: it is for demos,
benchmarks and tests of the mixing machinery without weights, not a substitute for a diffusion model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..errors import InputError
from .process import process_for


def _radius(height: int, width: int, *, half: bool = False) -> torch.Tensor:
    """Frequency magnitude in cycles per pixel on the (r)fft2 grid."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64).view(-1, 1)
    fx = (torch.fft.rfftfreq if half else torch.fft.fftfreq)(width, dtype=torch.float64).view(1, -1)
    return (fy * fy + fx * fx).sqrt()


class SpectralGaussian:
    """Per-channel mean ``mean`` and power spectrum ``amplitude[c] * f ** -beta[c]`` (orthonormal FFT units)."""

    def __init__(self, mean: torch.Tensor, amplitude: torch.Tensor, beta: torch.Tensor) -> None:
        self.mean, self.amplitude, self.beta = mean.double(), amplitude.double(), beta.double()
        self._spectra: dict[tuple[int, int], torch.Tensor] = {}

    @classmethod
    def fit(cls, images: torch.Tensor) -> SpectralGaussian:
        """Fit the mean and a power law per channel to a batch ``(B, C, H, W)`` (log-log least squares)."""
        if images.ndim != 4 or images.shape[0] < 1 or min(images.shape[-2:]) < 8:
            raise InputError(f"fit the prior to a (B, C, H, W) batch of at least 8x8 pixels; got {tuple(images.shape)}")
        x = images.detach().double().cpu()
        mean = x.mean(dim=(0, 2, 3))
        power = torch.fft.fft2(x - mean.view(1, -1, 1, 1), norm="ortho").abs().pow(2).mean(0)  # (C, H, W)
        r = _radius(*x.shape[-2:])
        keep = (r > 0) & (r <= 0.5)
        logf = r[keep].log()
        design = torch.stack([torch.ones_like(logf), -logf], dim=1)
        coef = torch.linalg.lstsq(design, power[:, keep].clamp_min(1e-12).log().T).solution  # (2, C)
        return cls(mean, coef[0].exp(), coef[1])

    def spectrum(self, height: int, width: int) -> torch.Tensor:
        """Power per rfft2 coefficient of an ``height`` x ``width`` image, (C, H, W // 2 + 1), float32; DC takes the
        lowest frequency's."""
        if (height, width) not in self._spectra:
            r = _radius(height, width, half=True)
            r[0, 0] = 1.0 / max(height, width)
            power = self.amplitude.view(-1, 1, 1) * r.unsqueeze(0) ** -self.beta.view(-1, 1, 1)
            self._spectra[(height, width)] = power.float()
        return self._spectra[(height, width)]

    def denoiser(self, prediction: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The exact ``D(x, sigma) -> E[z | x]`` for data noised by the forward process of ``prediction``."""
        process = process_for(prediction)

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            s = float(torch.as_tensor(sigma).reshape(-1)[0])
            a = process.alpha(s)
            mean = self.mean.float().view(1, -1, 1, 1).to(x.device)
            power = self.spectrum(*x.shape[-2:]).to(x.device)
            gain = a * power / (a * a * power + s * s) if s > 0 else torch.full_like(power, 1 / a)
            spec = torch.fft.rfft2(x.float() - a * mean, norm="ortho")
            return (mean + torch.fft.irfft2(spec * gain, s=x.shape[-2:], norm="ortho")).to(x.dtype)

        return denoise

    def __repr__(self) -> str:
        betas = ", ".join(f"{b:.2f}" for b in self.beta.tolist())
        return f"SpectralGaussian(channels={self.mean.numel()}, beta=[{betas}])"


def high_frequency_share(images: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Per image, the share of spectral power (mean removed) above ``cutoff`` cycles per pixel."""
    x = images.detach().double()
    power = torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True), norm="ortho").abs().pow(2)
    high = _radius(*x.shape[-2:]).to(x.device) > cutoff
    return (power[..., high].sum(dim=(-1, -2)) / power.flatten(1).sum(1).clamp_min(math.ulp(1.0))).float()
