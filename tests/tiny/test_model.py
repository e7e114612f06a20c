from functools import cache

import pytest
import torch

from latentbridge import spaces, tiny
from latentbridge.errors import InputError
from latentbridge.tiny import arch
from latentbridge.tiny.model import TinyAutoencoder


@cache
def _model(channels=4, variant="standard", space: str | None = None) -> TinyAutoencoder:
    """Small random models, shared between tests (frozen, so sharing is safe)."""
    torch.manual_seed(0)
    model = TinyAutoencoder(variant=variant, latent_channels=channels, encoder=arch.encoder(channels, variant),
                            decoder=arch.decoder(channels, variant), space=spaces.get(space) if space else None)
    return model.eval().requires_grad_(False)


def test_encode_decode_shapes_follow_the_downscale():
    m = _model()
    z = m.encode(torch.rand(2, 3, 40, 56))
    assert z.shape == (2, 4, 5, 7)
    assert m.decode(z).shape == (2, 3, 40, 56)


def test_encode_keeps_the_input_dtype_and_leaves_it_untouched():
    m = _model()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    before = x.clone()
    assert m.encode(x).dtype == torch.float64
    torch.testing.assert_close(x, before, rtol=0, atol=0)


@pytest.mark.parametrize("space", [s for s in spaces.all() if s.tiny], ids=lambda s: s.id)
def test_domains_round_trip_exactly_for_every_space_with_a_tiny_model(space):
    variant = "f32" if space.tiny == "taesana" else "standard"
    m = _model(space.taesd_channels, variant, space.id)
    x = torch.rand(1, 3, 2 * m.downscale, 2 * m.downscale)
    z = m.encode(x)
    decoded = m.decode(z)
    for domain in ("raw", "model"):
        other = m.encode(x, domain=domain)
        torch.testing.assert_close(other, spaces.convert_domain(z, space, "taesd", domain))
        torch.testing.assert_close(m.decode(other, domain=domain), decoded, atol=1e-5, rtol=1e-5)


def test_domain_without_a_known_space_is_a_clear_error():
    with pytest.raises(InputError, match="does not know its latent space.*space="):
        _model().encode(torch.rand(1, 3, 16, 16), domain="raw")


def test_decode_wrong_channel_count_is_a_clear_error():
    with pytest.raises(InputError, match=r"\(B, 4, H, W\); got \(1, 16, 2, 2\)"):
        _model().decode(torch.randn(1, 16, 2, 2))


def test_encode_size_not_a_multiple_of_the_downscale():
    m = _model()
    x = torch.rand(1, 3, 30, 21)
    with pytest.raises(InputError, match="not a multiple of 8.*fit='pad'.*fit='crop'"):
        m.encode(x)
    assert m.encode(x, fit="pad").shape[-2:] == (4, 3)
    assert m.encode(x, fit="crop").shape[-2:] == (3, 2)
    torch.testing.assert_close(m.encode(x, fit="crop"), m.encode(x[..., :24, :16]))


def test_encode_rejects_non_rgb_and_integer_images():
    m = _model()
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        m.encode(torch.rand(3, 16, 16))
    with pytest.raises(InputError, match="floating-point"):
        m.encode(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


def test_missing_half_is_a_clear_error():
    m = TinyAutoencoder(variant="standard", latent_channels=4, decoder=arch.decoder(4))
    with pytest.raises(InputError, match="has no encoder"):
        m.encode(torch.rand(1, 3, 8, 8))


def test_decode_with_grad_reaches_the_input():
    m = _model()
    z = torch.randn(1, 4, 2, 2, requires_grad=True)
    m.decode(z).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_real_taef2_round_trip_is_close(shared_models, photos):
    from latentbridge import io
    m = tiny.load("taef2")
    x = io.load_image(photos[0])[..., :256, :256]
    y = m.decode(m.encode(x)).clamp(0, 1)
    mse = float(((y - x) ** 2).mean())
    assert -10 * torch.log10(torch.tensor(mse)) > 24
