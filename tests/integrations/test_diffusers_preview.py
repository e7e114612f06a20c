"""The live-preview callback on tiny random diffusers pipelines built here (offline), for every listed scheduler."""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from latentbridge import spaces  # noqa: E402
from latentbridge.integrations.diffusers import preview as dp  # noqa: E402
from latentbridge.integrations.diffusers.preview import LivePreview, unpack_tokens  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEDULERS = {
    "ddim": lambda: diffusers.DDIMScheduler(set_alpha_to_one=True, clip_sample=False, steps_offset=1),
    "ddim-v": lambda: diffusers.DDIMScheduler(set_alpha_to_one=True, clip_sample=False, steps_offset=1,
                                               prediction_type="v_prediction"),
    "euler": lambda: diffusers.EulerDiscreteScheduler(),
    "euler-v": lambda: diffusers.EulerDiscreteScheduler(prediction_type="v_prediction"),
    "euler-ancestral": lambda: diffusers.EulerAncestralDiscreteScheduler(),
    "dpm++2m": lambda: diffusers.DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
                                                             final_sigmas_type="zero"),
    "dpm++2m-v": lambda: diffusers.DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
                                                               final_sigmas_type="zero", prediction_type="v_prediction"),
}


def _vae(cls=None, channels=4, **extra):
    cls = cls or diffusers.AutoencoderKL
    return cls(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=channels,
               down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
               norm_num_groups=4, sample_size=16, **extra).eval()


def sd_pipeline(scheduler: str):
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=2).eval()
    pipe = diffusers.StableDiffusionPipeline(vae=_vae(scaling_factor=0.18215), text_encoder=None, tokenizer=None,
                                             unet=unet, scheduler=SCHEDULERS[scheduler](), safety_checker=None,
                                             feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flux_pipeline(version: int):
    torch.manual_seed(0)
    sched = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=version == 1, base_image_seq_len=16,
                                                      max_image_seq_len=256)
    if version == 1:
        net = diffusers.FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                               attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                               pooled_projection_dim=16, guidance_embeds=True,
                                               axes_dims_rope=(4, 4, 8)).eval()
        pipe = diffusers.FluxPipeline(scheduler=sched, vae=_vae(channels=16, scaling_factor=0.3611, shift_factor=0.1159),
                                      text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                                      transformer=net)
    else:
        net = diffusers.Flux2Transformer2DModel(patch_size=1, in_channels=128, num_layers=1, num_single_layers=1,
                                                attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                                timestep_guidance_channels=32, axes_dims_rope=(4, 4, 4, 4)).eval()
        pipe = diffusers.Flux2Pipeline(scheduler=sched, vae=_vae(diffusers.AutoencoderKLFlux2, channels=32),
                                       text_encoder=None, tokenizer=None, transformer=net)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, callback=None, *, batch=1, height=16, width=16, steps=3):
    kwargs = {"height": height, "width": width, "num_inference_steps": steps, "output_type": "latent",
              "generator": torch.Generator().manual_seed(3)}
    if isinstance(pipe, diffusers.StableDiffusionPipeline):
        kwargs |= {"prompt_embeds": torch.randn(batch, 5, 16, generator=torch.Generator().manual_seed(1)),
                   "guidance_scale": 1.0}
    else:
        kwargs |= {"prompt_embeds": torch.randn(batch, 5, 16, generator=torch.Generator().manual_seed(1)),
                   "guidance_scale": 2.0}
        if isinstance(pipe, diffusers.FluxPipeline):
            kwargs["pooled_prompt_embeds"] = torch.randn(batch, 16, generator=torch.Generator().manual_seed(2))
    if callback is not None:
        kwargs |= {"callback_on_step_end": callback, "callback_on_step_end_tensor_inputs": ["latents"]}
    return pipe(**kwargs).images


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_live_preview_shows_x0_and_never_changes_the_latents(scheduler, tmp_path):
    plain = _run(sd_pipeline(scheduler), batch=2)
    pipe = sd_pipeline(scheduler)
    live = LivePreview(pipe, out_dir=tmp_path, method="linear")
    latents = _run(pipe, live, batch=2)
    assert torch.equal(latents, plain)
    # every listed scheduler lands exactly on its last x0 prediction (final sigma 0 / alpha 1)
    torch.testing.assert_close(live.x0, latents, atol=1e-4, rtol=1e-4)
    assert not live.errors
    assert sorted(p.name for p in tmp_path.glob("step-*.png")) == ["step-0000.png", "step-0001.png", "step-0002.png"]
    assert (tmp_path / "preview.webp").is_file() and (tmp_path / "grid.png").is_file()
    assert "step" not in vars(pipe.scheduler)  # the scheduler got its own step back


def test_live_preview_x0_matches_the_schedulers_own_prediction_mid_run():
    pipe = sd_pipeline("euler")
    seen = []
    pipe.scheduler.step = _recording(pipe.scheduler, seen)
    live = LivePreview(pipe, on_image=lambda step, images: None, method="linear")
    _run(pipe, live, steps=4)
    ours = live.x0
    assert len(seen) == 4
    torch.testing.assert_close(ours, seen[-1], atol=1e-5, rtol=1e-5)


def _recording(scheduler, seen):
    original = scheduler.step

    def step(*args, **kwargs):
        kwargs["return_dict"] = True
        out = original(*args, **kwargs)
        seen.append(out.pred_original_sample)
        return (out.prev_sample, out.pred_original_sample)

    return step


@pytest.mark.parametrize("version", [1, 2])
def test_live_preview_unpacks_flux_tokens(version, tmp_path):
    plain = _run(flux_pipeline(version), height=32, width=64)
    pipe = flux_pipeline(version)
    got = []
    live = LivePreview(pipe, on_image=lambda step, images: got.append((step, images)), method="linear",
                       height=32, width=64)
    latents = _run(pipe, live, height=32, width=64)
    assert torch.equal(latents, plain) and not live.errors
    sp = spaces.get("flux2" if version == 2 else "flux1")
    assert live.space is sp
    # flow matching: the last step's x0 is the final latent; one preview pixel per VAE latent pixel (FLUX.2 unpacked)
    torch.testing.assert_close(live.x0, latents, atol=1e-4, rtol=1e-4)
    down = pipe.vae_scale_factor
    assert [s for s, _ in got] == [0, 1, 2] and got[0][1][0].size == (64 // down, 32 // down)


def test_unpack_tokens_matches_the_pipelines_own_unpacking():
    pipe = flux_pipeline(1)
    grid = torch.randn(2, 16, 4, 6)
    tokens = pipe._pack_latents(grid, 2, 16, 4, 6)
    torch.testing.assert_close(unpack_tokens(tokens, spaces.get("flux1"), height=32, width=48), grid)
    f2 = torch.randn(1, 128, 3, 5)
    tokens2 = diffusers.Flux2Pipeline._pack_latents(f2)
    torch.testing.assert_close(unpack_tokens(tokens2, spaces.get("flux2"), height=48, width=80), f2)


def test_live_preview_falls_back_to_linear_on_out_of_memory_and_retries(tmp_path, monkeypatch):
    calls = []
    real = dp.preview

    def flaky(x, space, *, method, size=None):
        calls.append(method)
        if method == "tiny" and calls.count("tiny") == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(x, space, method="linear", size=size)

    monkeypatch.setattr(dp, "preview", flaky)
    pipe = sd_pipeline("ddim")
    live = LivePreview(pipe, out_dir=tmp_path, method="tiny")
    with pytest.warns(RuntimeWarning, match="out of memory"):
        _run(pipe, live)
    assert calls == ["tiny", "linear", "tiny", "tiny"] and live.fallbacks == 1
    assert len(list(tmp_path.glob("step-*.png"))) == 3


def test_live_preview_errors_never_stop_sampling():
    def broken(step, images):
        raise RuntimeError("display went away")

    pipe = sd_pipeline("euler")
    live = LivePreview(pipe, on_image=broken, method="linear")
    with pytest.warns(RuntimeWarning, match="display went away"):
        latents = _run(pipe, live)
    assert latents.shape == (1, 4, 8, 8) and len(live.errors) == 3


def test_live_preview_attaches_itself_when_given_no_pipeline(tmp_path):
    pipe = sd_pipeline("dpm++2m")
    live = LivePreview(out_dir=tmp_path, method="linear")
    latents = _run(pipe, live)
    assert live.space.id == "sd1" and not live.errors
    torch.testing.assert_close(live.x0, latents, atol=1e-4, rtol=1e-4)


def test_live_preview_example_runs_offline(tmp_path, monkeypatch, capsys):
    import runpy
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "diffusers" / "live_preview.py"
    monkeypatch.setattr(sys, "argv", [str(example), "--steps", "2", "--height", "32", "--width", "32",
                                      "--method", "linear", "--out", str(tmp_path)])
    runpy.run_path(str(example), run_name="__main__")
    assert "2 frames" in capsys.readouterr().out and (tmp_path / "preview.webp").is_file()
