import pytest
import torch

from latentbridge import mixing


@pytest.mark.parametrize("prediction", ["eps", "v", "flow"])
def test_denoiser_recovers_x0_from_an_exact_prediction(prediction):
    gen = torch.Generator().manual_seed(0)
    z, eps = torch.randn(3, 4, 8, 8, generator=gen), torch.randn(3, 4, 8, 8, generator=gen)
    sigma = torch.tensor([0.3, 0.3, 0.3]) if prediction == "flow" else torch.tensor([2.5, 2.5, 2.5])
    s = sigma.view(-1, 1, 1, 1)
    x = mixing.process_for(prediction).add_noise(z, eps, 0.3 if prediction == "flow" else 2.5)
    seen = {}

    def net(x_in, t):
        seen["t"] = t
        if prediction == "flow":
            assert torch.equal(x_in, x)
            return eps - z  # velocity
        a, b = 1 / (1 + s * s).sqrt(), s / (1 + s * s).sqrt()  # variance-preserving alpha, sigma
        assert torch.allclose(x_in, a * z + b * eps, atol=1e-5)
        return eps if prediction == "eps" else a * eps - b * z

    d = mixing.Denoiser(net, prediction, timestep=lambda sig: sig * 1000)
    assert torch.allclose(d(x, sigma), z, atol=1e-5)
    assert torch.allclose(seen["t"], sigma * 1000)
    assert torch.allclose(d(x, sigma[0]), z, atol=1e-5)  # a 0-d sigma is broadcast over the batch
