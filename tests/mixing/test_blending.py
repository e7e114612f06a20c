import pytest
import torch

from latentbridge import mixing
from latentbridge.errors import InputError


@pytest.fixture
def pair():
    gen = torch.Generator().manual_seed(3)
    return torch.randn(3, 4, 8, 8, generator=gen), 2 * torch.randn(3, 4, 8, 8, generator=gen)


@pytest.mark.parametrize("method", mixing.BLENDS)
def test_blend_endpoints_are_the_inputs(pair, method):
    x, z = pair
    assert torch.allclose(mixing.blend(x, z, 0.0, method), x, atol=1e-5)
    assert torch.allclose(mixing.blend(x, z, 1.0, method), z, atol=1e-5)


def test_blend_lerp_formula(pair):
    x, z = pair
    assert torch.allclose(mixing.blend(x, z, 0.3, "lerp"), 0.7 * x + 0.3 * z, atol=1e-6)


def test_blend_norm_preserving_keeps_the_interpolated_norm(pair):
    x, z = pair
    out = mixing.blend(x, z, 0.4, "norm_preserving")
    want = 0.6 * x.flatten(1).norm(dim=1) + 0.4 * z.flatten(1).norm(dim=1)
    assert torch.allclose(out.flatten(1).norm(dim=1), want, rtol=1e-5)
    lerp = mixing.blend(x, z, 0.4, "lerp")
    cos = torch.nn.functional.cosine_similarity(out.flatten(1), lerp.flatten(1))
    assert torch.allclose(cos, torch.ones(3), atol=1e-5)  # same direction as the lerp


def test_blend_slerp_follows_the_great_circle(pair):
    x, z = pair
    out = mixing.blend(x, z, 0.5, "slerp")
    # halfway: equal angles to both inputs
    a = torch.nn.functional.cosine_similarity(out.flatten(1), x.flatten(1))
    b = torch.nn.functional.cosine_similarity(out.flatten(1), z.flatten(1))
    assert torch.allclose(a, b, atol=1e-5)
    want = 0.5 * (x.flatten(1).norm(dim=1) + z.flatten(1).norm(dim=1))
    assert torch.allclose(out.flatten(1).norm(dim=1), want, rtol=1e-5)  # norm interpolated linearly


def test_blend_slerp_nearly_parallel_inputs_fall_back_to_lerp():
    x = torch.randn(2, 4, 8, 8)
    z = x * 1.5 + 1e-7 * torch.randn_like(x)
    out = mixing.blend(x, z, 0.3, "slerp")
    assert torch.isfinite(out).all()
    assert torch.allclose(out, torch.lerp(x, z, 0.3), atol=1e-5)
    zero = mixing.blend(torch.zeros_like(x), z, 0.3, "slerp")
    assert torch.isfinite(zero).all()


@pytest.mark.parametrize("method", mixing.BLENDS)
def test_blend_keeps_dtype_and_never_writes_inputs(pair, method):
    x, z = (t.half() for t in pair)
    before = x.clone(), z.clone()
    out = mixing.blend(x, z, 0.25, method)
    assert out.dtype == torch.float16
    assert torch.equal(x, before[0]) and torch.equal(z, before[1])


def test_blend_bad_input_is_explained(pair):
    x, z = pair
    with pytest.raises(InputError, match="cannot blend a latent of shape"):
        mixing.blend(x, z[:, :, :4], 0.5)
    with pytest.raises(InputError, match="use one of lerp"):
        mixing.blend(x, z, 0.5, "addition")
    with pytest.raises(InputError, match="must lie in"):
        mixing.blend(x, z, 1.5)
