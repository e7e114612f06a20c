import pytest
import torch

from latentbridge import mixing
from latentbridge.errors import InputError

from .conftest import sigmas_for


@pytest.mark.parametrize("prediction", ["eps", "flow"])
def test_sample_mixing_keeps_the_reference_structure(gaussian, prediction):
    # without mixing the result is a fresh sample; with the cosine schedule it stays near the reference
    steps = 20
    sig = sigmas_for(prediction, steps)
    ref = gaussian.sample(1, 4, 16, 16)
    d = gaussian.denoiser(prediction)
    free = mixing.sample(d, ref, sig, prediction=prediction, schedule=torch.zeros(steps), seed=1, disable=True)
    mixed = mixing.sample(d, ref, sig, prediction=prediction, alpha_1=1.0, seed=1, disable=True)
    stretched = mixing.sample(d, ref, sig, prediction=prediction, alpha_1=1.0, stop=2.0, seed=1, disable=True)
    err = [(t - ref).pow(2).mean().item() for t in (free, mixed, stretched)]
    assert err[2] < err[1] < err[0]


def test_sample_returns_input_device_dtype_and_leaves_the_reference(gaussian):
    ref = gaussian.sample(1, 4, 8, 8).half()
    before = ref.clone()
    out = mixing.sample(gaussian.denoiser("eps"), ref, sigmas_for("eps", 4), disable=True)
    assert out.dtype == torch.float16 and out.shape == ref.shape
    assert torch.equal(ref, before)


def test_sample_accepts_sigmas_as_a_list(gaussian):
    ref = gaussian.sample(1, 4, 8, 8)
    sig = sigmas_for("flow", 4)
    a = mixing.sample(gaussian.denoiser("flow"), ref, sig.tolist(), prediction="flow", disable=True)
    b = mixing.sample(gaussian.denoiser("flow"), ref, sig, prediction="flow", disable=True)
    assert torch.allclose(a, b)


def test_cleanup_pass_reruns_the_tail_from_fresh_noise(gaussian):
    sig = sigmas_for("eps", 20)
    assert torch.equal(mixing.cleanup_sigmas(sig, 0.25), sig[-6:])
    assert len(mixing.cleanup_sigmas(sig, 0.01)) == 2  # at least one step
    ref = gaussian.sample(1, 4, 8, 8)
    calls: list = []
    plain = mixing.sample(gaussian.denoiser("eps"), ref, sig, seed=3, disable=True)
    cleaned = mixing.sample(gaussian.denoiser("eps", calls), ref, sig, seed=3, cleanup=0.25, disable=True)
    assert len(calls) == 20 + 5
    assert [c[1] for c in calls[20:]] == pytest.approx(sig[-6:-1].tolist())
    assert not torch.equal(plain, cleaned)
    again = mixing.refine(gaussian.denoiser("eps"), plain, mixing.cleanup_sigmas(sig, 0.25), seed=3, disable=True)
    assert torch.equal(again, cleaned)


@pytest.mark.parametrize("kwargs,match", [
    ({"alpha_1": 0.0}, "alpha_1 must be > 0"),
    ({"start": 1.2}, "start is a fraction"),
    ({"stop": -1.0}, "stop must be a fraction"),
    ({"schedule": torch.ones(3)}, "3 weights but the sampler takes 5 steps"),
    ({"schedule": torch.full((5,), 2.0)}, "must lie in"),
    ({"prediction": "x0"}, "unknown prediction"),
    ({"sampler": "lms"}, "unknown sampler"),
    ({"blend": "mean"}, "unknown blending function"),
    ({"cleanup": 1.5}, "clean-up strength"),
    ({"noise": torch.randn(1, 4, 4, 4)}, "noise has shape"),
    ({"seed": -4}, "non-negative integer"),
])
def test_sample_bad_input_says_what_to_change(gaussian, kwargs, match):
    with pytest.raises(InputError, match=match):
        mixing.sample(gaussian.denoiser("eps"), gaussian.sample(1, 4, 8, 8), sigmas_for("eps", 5), **kwargs)


def test_sample_bad_sigmas_and_reference(gaussian):
    d = gaussian.denoiser("eps")
    ref = gaussian.sample(1, 4, 8, 8)
    with pytest.raises(InputError, match="at least 2 entries"):
        mixing.sample(d, ref, [3.0])
    with pytest.raises(InputError, match="strictly decreasing"):
        mixing.sample(d, ref, [1.0, 1.0, 0.0])
    with pytest.raises(InputError, match="flow-matching sigmas lie in"):
        mixing.sample(d, ref, sigmas_for("eps", 5), prediction="flow")
    with pytest.raises(InputError, match="floating-point latent"):
        mixing.sample(d, torch.ones(1, 4, 8, 8, dtype=torch.int64), sigmas_for("eps", 5))


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m"])
def test_sample_runs_on_a_5d_flow_video_latent(gaussian, sampler):
    steps = 12
    sig = sigmas_for("flow", steps)
    ref = gaussian.sample(1, 16, 5, 6, 8)  # (B, C, T, H, W) with T differing from C
    inner = gaussian.denoiser("flow")
    seen = []

    def d(x, sigma):  # a video model sees whole clips
        seen.append(tuple(x.shape))
        return inner(x, sigma)

    free = mixing.sample(d, ref, sig, prediction="flow", sampler=sampler, schedule=torch.zeros(steps), seed=1, disable=True)
    mixed = mixing.sample(d, ref, sig, prediction="flow", sampler=sampler, alpha_1=1.0, stop=2.0, cleanup=0.2, seed=1,
                          disable=True)
    assert mixed.shape == ref.shape and set(seen) == {(1, 16, 5, 6, 8)}
    assert (mixed - ref).pow(2).mean() < (free - ref).pow(2).mean()


def test_sample_runs_on_the_real_wan_flow_latent(gaussian, wan_latent):
    ref = wan_latent.float()
    out = mixing.sample(gaussian.denoiser("flow"), ref, sigmas_for("flow", 4), prediction="flow", alpha_1=1.0, seed=1,
                        disable=True)
    assert out.shape == (1, 16, 16, 40, 64) and bool(torch.isfinite(out).all())


def test_kind_is_a_deprecated_alias_of_prediction(gaussian):
    ref, sig = gaussian.sample(1, 4, 8, 8), torch.linspace(1, 0, 4)
    want = mixing.sample(gaussian.denoiser("flow"), ref, sig, prediction="flow", disable=True)
    with pytest.warns(DeprecationWarning, match=r"sample\(kind=\) is deprecated: pass prediction="):
        got = mixing.sample(gaussian.denoiser("flow"), ref, sig, kind="flow", disable=True)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="kind_of is deprecated"):
        assert mixing.kind_of("flux1") == mixing.prediction_of("flux1") == "flow"
    with pytest.raises(InputError, match="prediction= alone"):
        mixing.sample(gaussian.denoiser("flow"), ref, sig, kind="flow", prediction="flow")
