import pytest
import torch

from latentbridge.mixing.gaussian_prior import SpectralGaussian, high_frequency_share


def _field(beta: float, size: int = 64, batch: int = 8) -> torch.Tensor:
    """Gaussian fields with power spectrum f ** -beta (plus a mean of 0.2), in orthonormal FFT units."""
    prior = SpectralGaussian(torch.full((2,), 0.2), torch.full((2,), 1e-3), torch.full((2,), beta))
    white = torch.fft.rfft2(torch.randn(batch, 2, size, size, generator=torch.Generator().manual_seed(0)), norm="ortho")
    return 0.2 + torch.fft.irfft2(white * prior.spectrum(size, size).sqrt(), s=(size, size), norm="ortho")


@pytest.mark.parametrize("beta", [1.5, 2.0, 3.0])
def test_spectral_gaussian_fit_recovers_the_power_law(beta):
    prior = SpectralGaussian.fit(_field(beta))
    assert torch.allclose(prior.beta.float(), torch.full((2,), beta), atol=0.15)
    if beta < 2:  # steeper spectra put so much power near DC that the sample mean wanders
        assert torch.allclose(prior.mean.float(), torch.full((2,), 0.2), atol=0.02)


@pytest.mark.parametrize("prediction", ["eps", "flow"])
def test_spectral_gaussian_denoiser_limits_and_gain(prediction):
    prior = SpectralGaussian.fit(_field(2.0))
    d = prior.denoiser(prediction)
    x = _field(2.0, batch=2)
    assert torch.allclose(d(x, torch.tensor(0.0)), x, atol=1e-5)  # no noise: nothing to remove
    noisy = x + 0.5 * torch.randn_like(x) if prediction == "eps" else 0.5 * x + 0.5 * torch.randn_like(x)
    err_in = (noisy - x).pow(2).mean() if prediction == "eps" else (noisy / 0.5 - x).pow(2).mean()
    assert (d(noisy, torch.tensor(0.5)) - x).pow(2).mean() < err_in  # the Wiener filter helps
    if prediction == "flow":
        assert torch.allclose(d(torch.randn_like(x), torch.tensor(1.0)), torch.full_like(x, 0.2), atol=0.03)


def test_high_frequency_share_orders_smooth_and_rough_fields():
    smooth, rough = high_frequency_share(_field(3.5)), high_frequency_share(_field(0.5))
    assert (smooth < rough).all() and ((0 <= smooth) & (rough <= 1)).all()


def test_spectral_gaussian_fit_rejects_tiny_input():
    with pytest.raises(ValueError, match="at least 8x8"):
        SpectralGaussian.fit(torch.zeros(1, 3, 4, 4))
