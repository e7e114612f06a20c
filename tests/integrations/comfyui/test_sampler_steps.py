"""Driving ComfyUI's samplers with a hook before each sigma transition, over the stand-in sampler registry."""

from __future__ import annotations

import sys

import pytest
import torch
from tests.mixing.conftest import Gaussian

from latentbridge.integrations.comfyui import sampler_steps

STEPS = 4


@pytest.fixture
def comfy(monkeypatch):
    from tests.integrations.comfyui import fake_samplers

    fake_samplers.install(monkeypatch)
    return fake_samplers


class Recorder:
    """A hook that records what it was given and adds ``i + 1``, and a denoiser that records what it was given."""

    def __init__(self, steps: int = STEPS) -> None:
        self.mixed, self.evaluated, self.steps = [], [], steps
        self.denoiser = Gaussian(mu=0.1, std=0.2).denoiser("eps")

    def __len__(self) -> int:
        return self.steps

    def __call__(self, x: torch.Tensor, i: int) -> torch.Tensor:
        out = x + (i + 1)
        self.mixed.append((i, out.clone()))
        return out

    def model(self, x, sigma, **_):
        self.evaluated.append((float(sigma[0]), x.clone()))
        return self.denoiser(x, sigma[0])


def run(comfy_module, name: str, recorder, x=None, **options):
    from tests.integrations.comfyui import fake_comfy

    sampling = fake_comfy.EpsSampling()
    model = type("Model", (), {"__call__": lambda self, *a, **k: recorder.model(*a, **k), "inner_model": None})()
    sigmas = sampling.sigmas(recorder.steps)
    x = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(0)) * 14 if x is None else x
    return sampler_steps.run(name, model, x, sigmas, {"seed": 3}, None, True, recorder, options), sigmas


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m", "euler_ancestral"])
def test_state_samplers_are_blended_in_place_right_before_each_steps_evaluation(comfy, name):
    recorder = Recorder()
    _, sigmas = run(comfy, name, recorder)
    assert [i for i, _ in recorder.mixed] == list(range(STEPS))
    assert [s for s, _ in recorder.evaluated] == pytest.approx(sigmas[:-1].tolist())
    for (_, mixed), (_, seen) in zip(recorder.mixed, recorder.evaluated, strict=True):
        assert torch.equal(mixed, seen)


def test_step_samplers_mix_each_transition_and_never_an_inner_evaluation(comfy):
    recorder = Recorder()
    _, sigmas = run(comfy, "heun", recorder)
    assert [i for i, _ in recorder.mixed] == list(range(STEPS))
    assert len(recorder.evaluated) == 2 * STEPS - 1  # heun: two evaluations a step, one on the last
    firsts = [recorder.evaluated[0], *recorder.evaluated[2::2]]  # each step's first evaluation
    for (i, mixed), (sigma, seen) in zip(recorder.mixed, firsts, strict=True):
        assert sigma == pytest.approx(float(sigmas[i])) and torch.equal(mixed, seen)


def test_step_samplers_share_one_noise_sampler_made_for_the_whole_run(comfy, monkeypatch):
    given = []

    def sample_sa_solver(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
        given.append(noise_sampler)
        return x

    monkeypatch.setattr(sys.modules["comfy.k_diffusion.sampling"], "sample_sa_solver", sample_sa_solver)
    run(comfy, "sa_solver", Recorder())
    assert len(given) == STEPS and given[0] is not None and all(g is given[0] for g in given)


def test_a_state_sampler_that_evaluates_twice_in_a_step_is_an_error(comfy, monkeypatch):
    sampling = sys.modules["comfy.k_diffusion.sampling"]
    monkeypatch.setattr(sampling, "sample_euler", sampling.sample_heun)
    with pytest.raises(RuntimeError, match="evaluated the model twice in one step"):
        run(comfy, "euler", Recorder())


def test_unipc_is_mixed_once_per_transition_and_keeps_the_callers_sigmas(comfy):
    recorder = Recorder()
    out, sigmas = run(comfy, "uni_pc", recorder)
    before = sigmas.clone()
    assert [i for i, _ in recorder.mixed] == list(range(STEPS))
    assert len(recorder.evaluated) == STEPS  # the start, then a corrector evaluation in each update but the last
    plain, _ = run(comfy, "uni_pc", type("Keep", (Recorder,), {"__call__": lambda self, x, i: x})())
    assert not torch.allclose(out, plain) and torch.equal(sigmas, before) and sigmas[-1] == 0


def test_options_reach_only_the_samplers_that_take_them(comfy):
    keep = type("Keep", (Recorder,), {"__call__": lambda self, x, i: x})
    noisy, _ = run(comfy, "euler_ancestral", keep())
    quiet, _ = run(comfy, "euler_ancestral", keep(), eta=0.0)
    euler, _ = run(comfy, "euler", keep())
    euler_eta, _ = run(comfy, "euler", keep(), eta=0.0)
    assert not torch.equal(noisy, quiet) and torch.equal(euler, euler_eta)


def test_the_earlier_flow_euler_rule_is_comfyuis_euler(comfy):
    keep = type("Keep", (Recorder,), {"__call__": lambda self, x, i: x})
    assert torch.equal(run(comfy, "flow_euler", keep())[0], run(comfy, "euler", keep())[0])
    assert sampler_steps.comfy_name("flow_euler") == "euler" and sampler_steps.mode("flow_euler") == "state"


def test_sampler_names_are_comfyuis_then_the_earlier_rule(comfy):
    assert sampler_steps.sampler_names() == [*comfy.SAMPLER_NAMES, "flow_euler"]


def test_the_description_names_every_sampler_whose_result_changes():
    text = sampler_steps.describe()
    assert all(name in text for name in sampler_steps.CHANGES) and "history restarts" in text
    assert sampler_steps.what_changes("dpmpp_2m_sde") is None and sampler_steps.what_changes("heun") is None
    assert sampler_steps.what_changes("uni_pc") is None and "single-step" in sampler_steps.what_changes("new_one")
