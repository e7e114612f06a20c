"""Batch Unsampler, the Iterative Mixing SAMPLER function and the KSampler with presets, over a stand-in ComfyUI."""

from __future__ import annotations

import pytest
import torch
from tests.mixing.conftest import Gaussian

from latentbridge import mixing
from latentbridge.errors import InputError
from latentbridge.integrations.comfyui.common import SPACE_KEY
from latentbridge.integrations.comfyui.mixing import (
    SIGMAS_KEY,
    BatchUnsampler,
    MixingKSampler,
    MixingSampler,
    model_prediction,
    sample_iterative_mixing,
)

PREDICTIONS = {"eps": "EpsSampling", "flow": "ConstSampling"}


@pytest.fixture
def fake_comfy(monkeypatch):
    """fake_comfy's modules with the stand-in sampler registry of fake_samplers.py."""
    from tests.integrations.comfyui import fake_comfy as module
    from tests.integrations.comfyui import fake_samplers

    fake_samplers.install(monkeypatch)
    return module


def patcher(fake, prediction: str):
    gaussian = Gaussian(mu=0.1, std=0.2)
    return fake.ModelPatcher(getattr(fake, PREDICTIONS[prediction])(), gaussian.denoiser(prediction))


def clean_latent(batch: int = 1) -> dict:
    return {"samples": torch.randn(batch, 4, 6, 8, generator=torch.Generator().manual_seed(3)) * 5}


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_forward_kind_is_read_off_the_models_noise_scaling(fake_comfy, prediction):
    assert model_prediction(getattr(fake_comfy, PREDICTIONS[prediction])()) == prediction


def test_forward_kind_refuses_an_unknown_forward_process():
    class Scaled:
        def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
            return noise * sigma + 2 * latent_image

    with pytest.raises(InputError, match="noises latents in a way iterative mixing does not know"):
        model_prediction(Scaled())


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_mixing_sampler_matches_the_core_and_ignores_comfyuis_start(fake_comfy, prediction):
    """Whatever x ComfyUI hands over (add_noise on or off, flow models' zero start), the run starts from the copy."""
    model = patcher(fake_comfy, prediction)
    base = model.model
    reference = base.process_latent_in(clean_latent(2)["samples"])
    sigmas = base.model_sampling.sigmas(6)
    results = []
    for start in (torch.zeros_like(reference), torch.randn_like(reference) * 9):
        model_k = fake_comfy.X0Inpaint(base, reference)
        results.append(sample_iterative_mixing(model_k, start, sigmas, {"seed": 11}, blend="slerp", alpha_1=2.0))
    copies = mixing.Unsampler(reference, sigmas[:-1], prediction=prediction, seed=11)
    want = mixing.sample_mixing(fake_comfy.X0Inpaint(base, reference), copies[0], sigmas, {"seed": 11}, noised=copies,
                                weights=mixing.schedule("cosine", 6, alpha_1=2.0), blend="slerp", prediction=prediction, seed=11,
                                disable=True)
    assert torch.equal(results[0], results[1]) and torch.allclose(results[0], want, atol=1e-5)


def test_mixing_sampler_refuses_an_empty_latent(fake_comfy):
    base = patcher(fake_comfy, "eps").model
    zeros = torch.zeros(1, 4, 4, 4)
    with pytest.raises(InputError, match="empty"):
        sample_iterative_mixing(fake_comfy.X0Inpaint(base, zeros), zeros, base.model_sampling.sigmas(3))


def test_mixing_sampler_node_returns_a_ksampler_and_checks_settings_early(fake_comfy):
    (sampler,) = MixingSampler().get_sampler("dpmpp_2m", "linear", 2.0, "lerp", stop=1.5)
    assert sampler.sampler_function is sample_iterative_mixing
    assert sampler.extra_options["schedule"] == "linear" and sampler.extra_options["stop"] == 1.5
    with pytest.raises(InputError, match="stop must be a fraction greater than start"):
        MixingSampler().get_sampler(start=0.5, stop=0.4)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_batch_unsampler_noises_with_the_models_sigmas_and_forward_process(fake_comfy, prediction):
    model = patcher(fake_comfy, prediction)
    latent = {**clean_latent(2), "batch_index": [4, 5], "noise_mask": torch.ones(1, 6, 8), SPACE_KEY: "sd1"}
    before = latent["samples"].clone()
    batch, sigmas = BatchUnsampler().unsample(model, latent, "normal", 5, 1.0, seed=3, noise="shared")
    assert torch.equal(sigmas, model.model.model_sampling.sigmas(5)) and sigmas[-1] == 0
    assert batch["samples"].shape == (10, 4, 6, 8) and batch[SIGMAS_KEY] == pytest.approx(sigmas[:-1].tolist())
    assert "batch_index" not in batch and batch[SPACE_KEY] == "sd1" and batch["noise_mask"] is latent["noise_mask"]
    z = model.model.process_latent_in(before)
    eps = mixing.noise.randn(z, 3, mixing.noise.UNSAMPLE, 0)
    for k in (0, 4):  # step-major, sigma_0 first, (1 - s) z + s e for flow models, z + s e otherwise
        s = float(sigmas[k])
        want = (1 - s) * z + s * eps if prediction == "flow" else z + s * eps
        assert torch.allclose(model.model.process_latent_in(batch["samples"][2 * k:2 * k + 2]), want, atol=1e-5)
    assert torch.equal(latent["samples"], before) and latent["batch_index"] == [4, 5]


def test_batch_unsampler_denoise_takes_the_schedules_tail(fake_comfy):
    model = patcher(fake_comfy, "eps")
    _, sigmas = BatchUnsampler().unsample(model, clean_latent(), "normal", 4, 0.5)
    assert torch.equal(sigmas, model.model.model_sampling.sigmas(8)[-5:])


def test_mixing_sampler_fed_the_batch_equals_the_lazy_copies(fake_comfy):
    model = patcher(fake_comfy, "eps")
    latent = clean_latent()
    batch, sigmas = BatchUnsampler().unsample(model, latent, "normal", 4, 1.0, seed=9, noise="independent")
    reference = model.model.process_latent_in(latent["samples"])
    fed = sample_iterative_mixing(fake_comfy.X0Inpaint(model.model, reference), reference, sigmas, {"seed": 9},
                                  noised_batch=batch)
    lazy = sample_iterative_mixing(fake_comfy.X0Inpaint(model.model, reference), reference, sigmas, {"seed": 9},
                                   noise="independent")
    assert torch.allclose(fed, lazy, atol=1e-4)
    with pytest.raises(InputError, match="other sigmas"):
        sample_iterative_mixing(fake_comfy.X0Inpaint(model.model, reference), reference, sigmas * 0.5, {"seed": 9},
                                noised_batch=batch)
    with pytest.raises(InputError, match="does not split into 3 steps"):
        sample_iterative_mixing(fake_comfy.X0Inpaint(model.model, reference), reference, sigmas[1:], {"seed": 9},
                                noised_batch=batch)


def test_mixing_ksampler_runs_the_preset_then_a_cleanup_pass(fake_comfy):
    model = patcher(fake_comfy, "eps")
    latent = {**clean_latent(), "noise_mask": torch.ones(1, 6, 8)}
    before = latent["samples"].clone()
    out = MixingKSampler().sample(model, None, None, latent, seed=5, preset="auto", steps=10)
    samples, text = out["result"]
    preset = mixing.preset("sd1")
    assert samples["samples"].shape == before.shape and samples["noise_mask"] is latent["noise_mask"]
    assert text.startswith("preset auto (sd1: the model's latent format): steps 10, sampler dpmpp_2m (its state kept)")
    assert "forward process eps" in text and "clean-up from sigma" in text and out["ui"]["text"] == [text]
    mix, clean = fake_comfy.runs
    assert len(mix["sigmas"]) == 11 and mix["options"]["alpha_1"] == preset.alpha_1
    assert torch.equal(mix["noise"], torch.randn(before.shape, generator=torch.Generator().manual_seed(5)))
    assert len(clean["sigmas"]) == round(10 * preset.cleanup) + 1 and clean["noise"].std() > 0.5
    assert torch.equal(latent["samples"], before)


def test_mixing_ksampler_overrides_and_flow_models(fake_comfy):
    model = patcher(fake_comfy, "flow")
    out = MixingKSampler().sample(model, None, None, clean_latent(), preset="flux1", steps=4, sampler="euler",
                                  alpha_1=2.5, cleanup=0.0)
    text = out["result"][1]
    assert "steps 4, sampler euler" in text and "alpha_1 2.5" in text and "(1 - sigma) z + sigma eps" in text
    assert len(fake_comfy.runs) == 1 and "clean-up" not in text
    legacy = MixingKSampler().sample(model, None, None, clean_latent(), preset="flux1", steps=4, sampler="flow_euler",
                                     alpha_1=2.5, cleanup=0.0)
    assert torch.equal(legacy["result"][0]["samples"], out["result"][0]["samples"])  # flow_euler is euler
    with pytest.raises(InputError, match="empty"):
        MixingKSampler().sample(model, None, None, {"samples": torch.zeros(1, 4, 4, 4)})


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral", "heun", "dpm_2", "uni_pc"])
def test_mixing_ksampler_at_weight_zero_is_comfyuis_ksampler(fake_comfy, sampler):
    """maximum 0 and no clean-up: ComfyUI's noise, sigmas (dpm_2 and uni_pc drop the penultimate) and sampler."""
    from tests.integrations.comfyui import fake_samplers

    model = patcher(fake_comfy, "eps")
    latent = clean_latent(2)
    out = MixingKSampler().sample(model, None, None, latent, seed=7, cfg=5.0, preset="sd1", steps=6, sampler=sampler,
                                  cleanup=0.0, maximum=0.0)
    plain = fake_samplers.plain_ksampler(model, 7, 6, 5.0, sampler, "normal", None, None, latent)
    assert torch.equal(out["result"][0]["samples"], plain)
    assert "maximum 0" in out["result"][1] and "its state kept" in out["result"][1]


def test_mixing_ksampler_says_what_changes_for_a_sampler_run_step_by_step(fake_comfy):
    out = MixingKSampler().sample(patcher(fake_comfy, "eps"), None, None, clean_latent(), preset="sd1", steps=4,
                                  sampler="sa_solver", cleanup=0.0)
    assert "sampler sa_solver (history restarts at each step" in out["result"][1]
    assert "sa_solver: history restarts at each step" in MixingKSampler.DESCRIPTION
