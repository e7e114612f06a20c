"""The live-preview callback on tiny random diffusers pipelines built here (offline), for every listed scheduler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from latentbridge import spaces  # noqa: E402
from latentbridge.integrations.diffusers import preview as dp  # noqa: E402
from latentbridge.integrations.diffusers.preview import LivePreview, unpack_tokens  # noqa: E402
from latentbridge.preview import preview  # noqa: E402

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


@pytest.mark.parametrize("size, scale", [(32, 1), (48, 1), (49, 2), (64, 2)])
def test_live_preview_size_runs_the_flux2_preview_ladder_rung_nearest_it(preview_rungs, size, scale):
    paths = {s: preview_rungs("flux2", s) for s in (1, 2)}
    pipe = flux_pipeline(2)
    got = []
    live = LivePreview(pipe, on_image=lambda step, images: got.append(images), method="auto", size=size, height=32,
                       width=64)
    _run(pipe, live, height=32, width=64)
    assert not live.errors
    # the tiny VAE's 32 x 64 image: 16 x 32 by the /8 rung, 32 x 64 by the /4 one (48 is a tie: the cheaper rung)
    x0 = unpack_tokens(live.x0, spaces.get("flux2"), height=32, width=64, cell=pipe.vae_scale_factor * 2)
    want = preview(x0, "flux2", method="neural", previewer=paths[scale], size=size)[0]
    image = torch.from_numpy(np.asarray(got[-1][0]).copy()).permute(2, 0, 1).float() / 255
    assert image.shape == want.shape and (image - want).abs().max() <= 0.5 / 255 + 1e-6


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


@pytest.mark.parametrize("channels, space", [(16, "wan21"), (48, "wan22")])
def test_live_preview_of_a_wan_pipeline_shows_a_strip_of_every_latent_frame(channels, space, tmp_path):
    from tests.integrations.video_pipelines import run_video, wan_pipeline

    plain = run_video(wan_pipeline(channels), batch=2)
    pipe = wan_pipeline(channels)
    got = []
    live = LivePreview(pipe, out_dir=tmp_path, on_image=lambda step, images: got.append(images), method="linear")
    latents = run_video(pipe, live, batch=2)
    assert torch.equal(latents, plain) and not live.errors and live.space.id == space
    t, h, w = latents.shape[2:]  # 9 frames of 32x64 px: 3 latent frames of 4x8
    assert (t, h, w) == (3, 4, 8) and live.clips.shape == (2, 3, 3, 4, 8)
    assert len(got) == 3 and [im.size for im in got[-1]] == [(t * (w + 2) + 2, h + 4)] * 2  # one strip per clip
    torch.testing.assert_close(live.clips, preview(live.x0, space, method="linear"), atol=1e-6, rtol=0)
    from PIL import Image

    for i in range(2):
        with Image.open(tmp_path / f"clip-{i}.webp") as im:
            assert im.n_frames == 3
    assert "step" not in vars(pipe.scheduler)


def test_live_preview_of_an_ltx_pipeline_unpacks_its_tokens_on_the_transformers_grid(tmp_path):
    from tests.integrations.video_pipelines import ltx_pipeline, run_video

    plain = run_video(ltx_pipeline())
    pipe = ltx_pipeline()
    got = []
    live = LivePreview(pipe, on_image=lambda step, images: got.append(images), method="linear")
    tokens = run_video(pipe, live)
    assert torch.equal(tokens, plain) and not live.errors and live.space.id == "ltxv"
    # 9 frames of 32x64 px through this tiny VAE's /4 in time and space: a 3x8x16 grid of 128-channel tokens
    assert tokens.shape == (1, 3 * 8 * 16, 128) and live.grid == (3, 8, 16)
    torch.testing.assert_close(live.x0, tokens, atol=1e-4, rtol=1e-4)  # flow Euler lands on its last x0
    want = pipe._unpack_latents(live.x0, 3, 8, 16, 1, 1)  # the pipeline's own unpacking
    torch.testing.assert_close(live.clips, preview(want, "ltxv", method="linear"), atol=1e-6, rtol=0)
    assert len(got) == 3 and got[0][0].size == (3 * 18 + 2, 12)
    assert live._hook is None  # the transformer's hook went with the scheduler's step


def test_live_preview_of_ltx_tokens_uses_the_given_clip_size_without_a_pipeline():
    from tests.integrations.video_pipelines import ltx_pipeline, run_video

    pipe = ltx_pipeline()
    got = []
    live = LivePreview(on_image=lambda step, images: got.append(step), method="linear", num_frames=9, height=32,
                       width=64)
    run_video(pipe, live)
    assert got == [0, 1, 2] and not live.errors and live.clips.shape == (1, 3, 3, 8, 16)


def test_video_tokens_unpack_and_pack_as_the_ltx_pipeline_does():
    x = torch.randn(2, 8, 4, 6, 10)
    for patch, patch_t in ((1, 1), (2, 2)):
        tokens = diffusers.LTXPipeline._pack_latents(x, patch, patch_t)
        assert torch.equal(dp.pack_video_tokens(x, patch, patch_t), tokens)
        assert torch.equal(dp.unpack_video_tokens(tokens, (4, 6, 10), patch, patch_t), x)
    with pytest.raises(dp.InputError, match="num_frames="):
        dp.unpack_video_tokens(tokens, (4, 6, 12), 2, 2)


def test_a_deep_copy_of_the_observed_scheduler_steps_plainly(tmp_path):
    import copy

    pipe = sd_pipeline("euler")
    live = LivePreview(pipe, out_dir=tmp_path, method="linear")
    twin = copy.deepcopy(pipe.scheduler)  # LTX-2 copies its scheduler for the audio latents
    assert twin.step.__self__ is twin and isinstance(pipe.scheduler.step, dp._ObservedStep)
    twin.set_timesteps(3)
    twin.step(torch.zeros(1, 4, 2, 2), twin.timesteps[0], torch.ones(1, 4, 2, 2))
    assert live.x0 is None and pipe.scheduler.step_index is None


def test_video_pipelines_are_known_by_class():
    for name, space in (("HunyuanVideoPipeline", "hunyuanvideo"), ("HunyuanVideo15Pipeline", "hunyuanvideo15"),
                        ("LTX2Pipeline", "ltxv"), ("LTXImageToVideoPipeline", "ltxv")):
        assert spaces.from_diffusers(type(name, (), {})()).id == space
