"""The diffusers mixing helper end to end on tiny random pipelines built here from diffusers classes (offline)."""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from latentbridge import mixing  # noqa: E402
from latentbridge.errors import InputError  # noqa: E402
from latentbridge.integrations.diffusers import mixing as dm  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


VAE_CONSTANTS = {"sd1": (0.18215, None), "sdxl": (0.13025, None), "sd3": (1.5305, 0.0609), "flux1": (0.3611, 0.1159)}


def _vae(channels: int, scaling: float, shift: float | None):
    vae = diffusers.AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=channels,
                                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                  norm_num_groups=4, sample_size=16, scaling_factor=scaling, shift_factor=shift)
    return vae.eval()


def _clip_tokenizer():
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": 26 + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": 52, "<|endoftext|>": 53}
    return transformers.CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)


def _unet(cross: int, **extra):
    return diffusers.UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross, norm_num_groups=4, attention_head_dim=2, **extra).eval()


def tiny_pipeline(fam: str, scheduler: str = "euler"):
    torch.manual_seed(0)
    vae = _vae(4 if fam in ("sd1", "sdxl") else 16, *VAE_CONSTANTS[fam])
    if fam == "sd1":
        text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
            hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1, vocab_size=54,
            max_position_embeddings=16, bos_token_id=52, eos_token_id=53, pad_token_id=53)).eval()
        sched = (diffusers.PNDMScheduler(skip_prk_steps=True, steps_offset=1) if scheduler == "pndm"
                 else diffusers.EulerDiscreteScheduler(timestep_spacing="trailing"))
        pipe = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=_clip_tokenizer(),
                                                 unet=_unet(16), scheduler=sched, safety_checker=None,
                                                 feature_extractor=None, requires_safety_checker=False)
    elif fam == "sdxl":
        unet = _unet(32, addition_embed_type="text_time", addition_time_embed_dim=4,
                     projection_class_embeddings_input_dim=4 * 6 + 16)
        pipe = diffusers.StableDiffusionXLPipeline(vae=vae, text_encoder=None, text_encoder_2=None, tokenizer=None,
                                                   tokenizer_2=None, unet=unet,
                                                   scheduler=diffusers.EulerDiscreteScheduler(), add_watermarker=False)
    elif fam == "sd3":
        net = diffusers.SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=16, num_layers=1,
                                              attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                              caption_projection_dim=16, pooled_projection_dim=16, out_channels=16,
                                              pos_embed_max_size=16).eval()
        pipe = diffusers.StableDiffusion3Pipeline(transformer=net, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
                                                  vae=vae, text_encoder=None, tokenizer=None, text_encoder_2=None,
                                                  tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)
    else:
        net = diffusers.FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                               attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                               pooled_projection_dim=16, guidance_embeds=True,
                                               axes_dims_rope=(4, 4, 8)).eval()
        sched = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=16,
                                                          max_image_seq_len=256)
        pipe = diffusers.FluxPipeline(scheduler=sched, vae=vae, text_encoder=None, tokenizer=None,
                                      text_encoder_2=None, tokenizer_2=None, transformer=net)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def embeds(fam: str) -> dict:
    """Prompt embeddings for pipelines built without text encoders."""
    gen = torch.Generator().manual_seed(1)
    if fam == "sd1":
        return {}
    width = 32 if fam == "sdxl" else 16
    out = {"prompt_embeds": torch.randn(1, 7, width, generator=gen), "pooled_prompt_embeds": torch.randn(1, 16, generator=gen)}
    if fam == "sd3":
        out |= {"negative_prompt_embeds": torch.randn(1, 7, 16, generator=gen),
                "negative_pooled_prompt_embeds": torch.randn(1, 16, generator=gen)}
    return out


def _prompt(fam: str) -> dict:
    return {"prompt": "a red house"} if fam == "sd1" else embeds(fam)


@pytest.mark.parametrize("fam", dm.FAMILIES)
def test_pipeline_denoiser_reproduces_the_pipelines_own_euler_sampling(fam):
    # with no mixing, our Euler loop over pipeline_denoiser and pipeline_sigmas must land where the pipeline's own
    # scheduler does: same network calls, timesteps, conditioning, guidance and sigmas
    pipe = tiny_pipeline(fam)
    steps, guidance = 4, 3.0
    shape = (1, 4, 8, 8) if fam in ("sd1", "sdxl") else (1, 16, 8, 8)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    given = noise if fam != "flux1" else pipe._pack_latents(noise, *shape)
    theirs = pipe(height=16, width=16, num_inference_steps=steps, guidance_scale=guidance, latents=given,
                  output_type="latent", **_prompt(fam)).images
    if fam == "flux1":
        theirs = pipe._unpack_latents(theirs, 16, 16, pipe.vae_scale_factor)
    d = dm.pipeline_denoiser(pipe, guidance_scale=guidance, **_prompt(fam))
    sigmas = dm.pipeline_sigmas(pipe, steps, latent_hw=(8, 8))
    start = noise * pipe.scheduler.init_noise_sigma if fam in ("sd1", "sdxl") else noise
    ours = mixing.run_sampler("euler", d, start, sigmas, disable=True, prediction=d.prediction)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), (ours - theirs).abs().max()


@pytest.mark.parametrize("fam", dm.FAMILIES)
def test_mixing_upscale_end_to_end(fam):
    pipe = tiny_pipeline(fam, scheduler="pndm")
    kwargs = dict(height=16, width=16, steps=4, base_steps=3, seed=5, progress=False, **_prompt(fam))
    out = dm.mixing_upscale(pipe, **kwargs)
    assert out.base_latents.shape[-2:] == (8, 8) and out.latents.shape[-2:] == (16, 16)
    assert len(out.images) == 1 and out.images[0].size == (32, 32)
    assert torch.isfinite(out.latents).all()
    assert out.settings == mixing.preset(fam).__class__(**{**mixing.preset(fam).__dict__, "steps": 4})
    again = dm.mixing_upscale(pipe, **kwargs)
    assert torch.equal(out.latents, again.latents)  # seeded: repeats exactly


def test_mixing_upscale_takes_a_latent_and_honours_overrides():
    pipe = tiny_pipeline("sd1")
    base = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = dm.mixing_upscale(pipe, base, prompt="a cat", scale=1.5, steps=3, alpha_1=1.0, sampler="euler_ancestral",
                            blend="slerp", denoise=0.7, cleanup=0.0, output_type="latent", progress=False)
    assert out.images is None and out.latents.shape == (2, 4, 12, 12)  # 8 * 1.5, a multiple of the UNet's 2
    assert out.settings.sampler == "euler_ancestral" and out.settings.cleanup == 0.0
    assert torch.equal(out.base_latents, base)


def test_pipeline_sigmas_denoise_takes_the_tail_and_falls_back_for_pndm():
    pipe = tiny_pipeline("sd1", scheduler="pndm")
    full = dm.pipeline_sigmas(pipe, 10)
    assert full[-1] == 0 and bool((full[1:] < full[:-1]).all()) and len(full) == 11
    part = dm.pipeline_sigmas(pipe, 5, denoise=0.5)
    assert len(part) == 6 and torch.allclose(part, full[-6:])


def test_mixing_upscale_bad_input_is_explained():
    pipe = tiny_pipeline("sd1")
    with pytest.raises(InputError, match="give a prompt"):
        dm.mixing_upscale(pipe, torch.randn(1, 4, 8, 8))
    with pytest.raises(InputError, match="C=4"):
        dm.mixing_upscale(pipe, torch.randn(1, 16, 8, 8), prompt="a cat")
    with pytest.raises(InputError, match="alpha_1 must be > 0"):
        dm.mixing_upscale(pipe, torch.randn(1, 4, 8, 8), prompt="a cat", alpha_1=0)
    with pytest.raises(InputError, match="flow_euler is for flow-matching"):
        dm.mixing_upscale(pipe, torch.randn(1, 4, 8, 8), prompt="a cat", sampler="flow_euler")
    with pytest.raises(InputError, match="does not know"):
        dm.mixing_upscale(object(), prompt="a cat")


def test_family_rejects_unets_with_extra_input_channels():
    pipe = tiny_pipeline("sd1")
    pipe.unet.register_to_config(in_channels=9)  # what an inpainting UNet declares
    with pytest.raises(InputError, match="9 input channels"):
        dm.family(pipe)
