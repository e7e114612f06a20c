"""The step rules against a Gaussian data distribution, whose exact denoiser and ODE solution are known."""

import pytest
import torch

from latentbridge import mixing
from latentbridge.errors import InputError

from .conftest import sigmas_for

CASES = [("eps", "euler", 400, 0.01), ("eps", "dpmpp_2m", 40, 0.005), ("v", "dpmpp_2m", 40, 0.005),
         ("flow", "euler", 400, 0.01), ("flow", "flow_euler", 400, 0.01), ("flow", "dpmpp_2m", 40, 0.01)]


@pytest.mark.parametrize("prediction,sampler,steps,tol", CASES)
def test_sampler_without_mixing_reaches_the_analytic_ode_solution(gaussian, prediction, sampler, steps, tol):
    sig = sigmas_for(prediction, steps)
    ref = gaussian.sample(2, 4, 8, 8)
    eps = torch.randn(ref.shape, generator=torch.Generator().manual_seed(9))
    out = mixing.sample(gaussian.denoiser(prediction), ref, sig, prediction=prediction, schedule=torch.zeros(steps),
                        sampler=sampler, noise=eps, disable=True)
    start = gaussian.alpha(float(sig[0]), prediction) * ref + float(sig[0]) * eps
    want = gaussian.ode_solution(start, float(sig[0]), prediction)
    assert (out - want).abs().max() < tol


@pytest.mark.parametrize("prediction", ["eps", "flow"])
def test_euler_ancestral_without_mixing_reaches_the_data_distribution(gaussian, prediction):
    steps = 300
    ref = gaussian.sample(8, 4, 32, 32)
    out = mixing.sample(gaussian.denoiser(prediction), ref, sigmas_for(prediction, steps), prediction=prediction,
                        schedule=torch.zeros(steps), sampler="euler_ancestral", seed=4, disable=True)
    assert out.mean().item() == pytest.approx(gaussian.mu, abs=0.01)
    assert out.std().item() == pytest.approx(gaussian.std, rel=0.03)
    # fresh noise: the result is not the deterministic ODE image of the start
    start = mixing.Unsampler(ref, sigmas_for(prediction, steps)[:-1], prediction=prediction, seed=4)[0]
    assert (out - gaussian.ode_solution(start, float(sigmas_for(prediction, steps)[0]), prediction)).abs().mean() > 0.05


@pytest.mark.parametrize("prediction", ["eps", "flow"])
@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m"])
def test_full_mixing_weight_follows_the_noised_copy_path(gaussian, prediction, sampler):
    steps = 12
    sig = sigmas_for(prediction, steps)
    ref = gaussian.sample(1, 4, 8, 8)
    eps = torch.randn_like(ref)
    calls: list = []
    out = mixing.sample(gaussian.denoiser(prediction, calls), ref, sig, prediction=prediction, schedule=torch.ones(steps),
                        sampler=sampler, noise=eps, disable=True)
    assert len(calls) == steps
    for k, (x, sigma) in enumerate(calls):
        assert sigma == pytest.approx(float(sig[k]))
        want = gaussian.alpha(float(sig[k]), prediction) * ref + float(sig[k]) * eps
        assert torch.allclose(x, want, atol=1e-5), f"step {k}: the model did not see the copy at its own sigma"
    last = gaussian.denoiser(prediction)(calls[-1][0], torch.tensor(float(sig[-2])))
    assert torch.allclose(out, last, atol=1e-5)  # the final step goes from the last copy to sigma 0


class _Recorder(mixing.Unsampler):
    """An unsampler that logs which copy the sampler asks for."""

    def __init__(self, *args, log: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = log

    def __getitem__(self, k):
        self.log.append(("copy", k, float(self.sigmas[k])))
        return super().__getitem__(k)


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m"])
@pytest.mark.parametrize("blend", mixing.BLENDS)
def test_blended_copy_has_the_noise_level_the_step_evaluates_at(gaussian, sampler, blend):
    steps = 10
    sig = sigmas_for("eps", steps)
    ref = gaussian.sample(1, 4, 8, 8)
    log: list = []
    copies = _Recorder(ref, sig[:-1], seed=2, log=log)

    def model(x, sigma):
        log.append(("model", None, float(sigma[0])))
        return gaussian.denoiser("eps")(x, sigma[0])

    weights = mixing.schedule("cosine", steps, alpha_1=1.0, stop=2.0)  # > 0 at every step
    mixing.sample_mixing(model, copies[0], sig, noised=copies, weights=weights, sampler=sampler, blend=blend, disable=True)
    log = log[1:]  # the start latent
    assert [e[0] for e in log] == ["copy", "model"] * steps
    for k in range(steps):
        (_, idx, copy_sigma), (_, _, model_sigma) = log[2 * k], log[2 * k + 1]
        assert idx == k and copy_sigma == pytest.approx(model_sigma, rel=1e-6)


@pytest.mark.parametrize("prediction", ["eps", "flow"])
def test_noise_level_of_the_blended_latents_matches_the_sampler_statistically(gaussian, prediction):
    # reference drawn from the data distribution: the latent the model sees at step k must be distributed like
    # data noised to sigma_k, i.e. variance alpha^2 std^2 + sigma_k^2
    steps = 10
    sig = sigmas_for(prediction, steps)
    ref = gaussian.sample(16, 4, 32, 32)
    calls: list = []
    mixing.sample(gaussian.denoiser(prediction, calls), ref, sig, prediction=prediction, schedule=torch.ones(steps), seed=1,
                  disable=True)
    for (x, sigma), want in zip(calls, sig[:-1].tolist(), strict=True):
        a = gaussian.alpha(want, prediction)
        assert sigma == pytest.approx(want)
        assert x.var().item() == pytest.approx((a * gaussian.std) ** 2 + want**2, rel=0.02)


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m"])
@pytest.mark.parametrize("shared", [True, False])
def test_seeded_runs_repeat_exactly(gaussian, sampler, shared):
    sig = sigmas_for("eps", 8)
    ref = gaussian.sample(2, 4, 8, 8)
    run = [mixing.sample(gaussian.denoiser("eps"), ref, sig, sampler=sampler, seed=s, shared_noise=shared,
                         cleanup=0.25, disable=True) for s in (7, 7, 8)]
    assert torch.equal(run[0], run[1])
    assert not torch.equal(run[0], run[2])


def test_sample_mixing_is_a_k_diffusion_sampler(gaussian):
    sig = sigmas_for("eps", 6)
    ref = gaussian.sample(2, 4, 8, 8)
    seen: list = []

    def model(x, sigma, *, cond):
        assert sigma.shape == (2,) and cond == "c"
        return gaussian.denoiser("eps")(x, sigma[0])

    x = torch.randn_like(ref)
    before = x.clone()
    out = mixing.sample_mixing(model, x, sig, {"cond": "c"}, seen.append, True,
                               noised=mixing.Unsampler(ref, sig[:-1]), weights="cosine", alpha_1=2.0)
    assert torch.equal(x, before)  # never written in place
    assert out.shape == ref.shape
    assert [sorted(d) for d in seen] == [["denoised", "i", "sigma", "sigma_hat", "x"]] * 6
    assert [d["i"] for d in seen] == list(range(6))


def test_sample_mixing_accepts_a_materialised_batch(gaussian):
    sig = sigmas_for("flow", 5)
    ref = gaussian.sample(2, 4, 8, 8)
    un = mixing.Unsampler(ref, sig[:-1], prediction="flow", seed=3)
    d = mixing.Denoiser(lambda x, t: torch.zeros_like(x), "flow")
    lazy = mixing.sample_mixing(d, un[0], sig, noised=un, prediction="flow", disable=True)
    batch = mixing.sample_mixing(d, un[0], sig, noised=un.materialise(), prediction="flow", disable=True)
    assert torch.equal(lazy, batch)


def test_sample_mixing_bad_input_says_what_to_change(gaussian):
    sig = sigmas_for("eps", 6)
    ref = gaussian.sample(2, 4, 8, 8)
    d = gaussian.denoiser("eps")

    def model(x, s):
        return d(x, s[0])

    un = mixing.Unsampler(ref, sig[:-1])
    with pytest.raises(InputError, match="noised batch holds 10 latents but the sampler runs 6 steps"):
        mixing.sample_mixing(model, ref, sig, noised=un.materialise()[:10])
    with pytest.raises(InputError, match="5 noised copies for 6 sampler steps"):
        mixing.sample_mixing(model, ref, sig, noised=mixing.Unsampler(ref, sig[:-2]))
    with pytest.raises(InputError, match="shape"):
        mixing.sample_mixing(model, ref[:, :, :4], sig, noised=un)
    with pytest.raises(InputError, match="made at other sigmas"):
        mixing.sample_mixing(model, ref, sig, noised=mixing.Unsampler(ref, sig[:-1] * 1.5))
    with pytest.raises(InputError, match="has 4 weights but the sampler takes 6 steps"):
        mixing.sample_mixing(model, ref, sig, noised=un, weights=torch.ones(4))
    with pytest.raises(InputError, match="unknown sampler"):
        mixing.sample_mixing(model, ref, sig, noised=un, sampler="heun")
    with pytest.raises(InputError, match="flow_euler is for flow-matching models"):
        mixing.sample_mixing(model, ref, sig, noised=un, sampler="flow_euler")
    with pytest.raises(InputError, match="strictly decreasing"):
        mixing.sample_mixing(model, ref, sig.flip(0), noised=un)
