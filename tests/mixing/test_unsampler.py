import pytest
import torch

from latentbridge import mixing, spaces
from latentbridge.errors import InputError

from .conftest import sigmas_for


@pytest.fixture
def ref():
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("prediction", ["eps", "v", "flow"])
def test_unsampler_forward_process_per_kind(ref, prediction):
    sig = sigmas_for(prediction, 10)[:-1]
    eps = torch.randn_like(ref)
    un = mixing.Unsampler(ref, sig, prediction=prediction, noise=eps)
    for k in range(len(un)):
        s = float(sig[k])
        want = ref + s * eps if prediction != "flow" else (1 - s) * ref + s * eps
        assert torch.allclose(un[k], want, atol=1e-6)


def test_unsampler_flow_and_ve_differ_and_flow_reaches_pure_noise(ref):
    eps = torch.randn_like(ref)
    flow = mixing.Unsampler(ref, [1.0, 0.5], prediction="flow", noise=eps)
    ve = mixing.Unsampler(ref, [1.0, 0.5], prediction="eps", noise=eps)
    assert torch.equal(flow[0], eps)  # all structure gone at sigma = 1
    assert torch.allclose(ve[0], ref + eps)
    assert not torch.allclose(flow[1], ve[1])


def test_unsampler_shares_one_seeded_noise_by_default(ref):
    sig = sigmas_for("eps", 6)[:-1]
    un = mixing.Unsampler(ref, sig, seed=11)
    noises = [(un[k] - ref) / float(sig[k]) for k in range(len(un))]
    for n in noises[1:]:
        assert torch.allclose(n, noises[0], atol=1e-4)
    again = mixing.Unsampler(ref, sig, seed=11)
    assert all(torch.equal(un[k], again[k]) for k in range(len(un)))
    other = mixing.Unsampler(ref, sig, seed=12)
    assert not torch.equal(un[0], other[0])


def test_unsampler_independent_noise_per_step_on_request(ref):
    sig = sigmas_for("flow", 5)[:-1]
    un = mixing.Unsampler(ref, sig, prediction="flow", seed=3, shared_noise=False)
    shared = mixing.Unsampler(ref, sig, prediction="flow", seed=3)
    assert torch.equal(un.noise(0), shared.noise(0))  # step 0 draws the same noise either way
    assert not torch.allclose(un.noise(1), un.noise(2))
    assert torch.equal(un[3], mixing.Unsampler(ref, sig, prediction="flow", seed=3, shared_noise=False)[3])


def test_unsampler_materialise_is_step_major_in_sampler_order(ref):
    sig = sigmas_for("eps", 4)[:-1]
    un = mixing.Unsampler(ref, sig, seed=1)
    batch = un.materialise()
    assert batch.shape == (4 * 2, 4, 8, 8)
    for k in range(4):
        assert torch.equal(batch[2 * k:2 * k + 2], un[k])
    back = mixing.NoisedBatch(batch, 4)
    assert len(back) == 4 and back.shape == ref.shape
    assert torch.equal(back[2], un[2]) and torch.equal(back[-1], un[3])


def test_unsampler_follows_device_and_dtype_and_keeps_the_reference(ref):
    half = ref.half()
    before = half.clone()
    un = mixing.Unsampler(half, [2.0, 1.0], seed=0)
    assert un[0].dtype == torch.float16
    assert torch.equal(half, before)


@pytest.mark.parametrize("space", spaces.all(), ids=lambda s: s.id)
def test_unsampler_works_in_the_model_domain_of_every_space(space):
    raw = torch.randn(space.latent_shape(64, 64, domain="raw"), generator=torch.Generator().manual_seed(2))
    z = spaces.convert_domain(raw, space, "raw", "model")
    prediction = mixing.prediction_of(space)
    sig = sigmas_for(prediction, 3)[:-1]
    un = mixing.Unsampler(z, sig, prediction=prediction, seed=0)
    eps = un.noise(0)
    alpha = (1 - sig) if prediction == "flow" else torch.ones_like(sig)
    for k in range(len(un)):
        assert torch.allclose(un[k], alpha[k] * z + sig[k] * eps, atol=1e-5)
    # the ComfyUI batch can go back to the raw domain exactly
    assert torch.allclose(spaces.convert_domain(un[0], space, "model", "raw"), space.from_model(un[0]), atol=1e-6)


def test_unsampler_bad_input_is_explained(ref):
    with pytest.raises(InputError, match="strictly decreasing"):
        mixing.Unsampler(ref, [1.0, 2.0])
    with pytest.raises(InputError, match="flow-matching sigmas lie in"):
        mixing.Unsampler(ref, [14.6, 1.0], prediction="flow")
    with pytest.raises(InputError, match="noise has shape"):
        mixing.Unsampler(ref, [1.0, 0.5], noise=torch.randn(1, 4, 8, 8))
    with pytest.raises(InputError, match="not both"):
        mixing.Unsampler(ref, [1.0, 0.5], noise=torch.randn_like(ref), shared_noise=False)
    with pytest.raises(InputError, match="unknown prediction"):
        mixing.Unsampler(ref, [1.0, 0.5], prediction="x0")
    with pytest.raises(InputError, match="non-negative integer"):
        mixing.Unsampler(ref, [1.0, 0.5], seed=-1)
    with pytest.raises(IndexError):
        mixing.Unsampler(ref, [1.0, 0.5])[2]
    with pytest.raises(InputError, match="does not split into 3 steps"):
        mixing.NoisedBatch(torch.randn(4, 4, 8, 8), 3)


def test_unsampler_noises_5d_video_latents_whole_and_materialises_step_major():
    ref = torch.randn(2, 16, 3, 4, 4)
    u = mixing.Unsampler(ref, [0.9, 0.5, 0.1], prediction="flow", seed=3)
    assert u[1].shape == ref.shape
    torch.testing.assert_close(u[1], 0.5 * ref + 0.5 * u.noise(1))
    batch = u.materialise()
    assert batch.shape == (6, 16, 3, 4, 4)
    torch.testing.assert_close(batch[2:4], u[1])
