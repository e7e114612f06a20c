"""Tiny random Wan and LTX-Video pipelines built offline from their components (no tokenizer: prompt embeddings)."""

from __future__ import annotations

import diffusers
import torch


def wan_pipeline(channels: int = 16):
    """A WanPipeline with a 16-channel (Wan 2.1) or 48-channel (Wan 2.2 TI2V-5B) VAE and diffusers' default flow UniPC."""
    torch.manual_seed(0)
    stats = {} if channels == 16 else {"latents_mean": [0.1] * channels, "latents_std": [0.5] * channels}
    vae = diffusers.AutoencoderKLWan(base_dim=3, z_dim=channels, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                     temperal_downsample=[False, True, True], **stats).eval()
    net = diffusers.WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                          in_channels=channels, out_channels=channels, text_dim=16, freq_dim=32,
                                          ffn_dim=16, num_layers=1, cross_attn_norm=True,
                                          qk_norm="rms_norm_across_heads", rope_max_seq_len=32).eval()
    sched = diffusers.UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe = diffusers.WanPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=sched, transformer=net)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ltx_pipeline():
    """An LTXPipeline with a 128-channel LTX-Video VAE (/4 in space and time at this size) and random statistics."""
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=128, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, timestep_conditioning=False, patch_size=1,
        patch_size_t=1, encoder_causal=True, decoder_causal=False).eval()
    vae.latents_mean.copy_(torch.randn(128) * 0.3)
    vae.latents_std.copy_(torch.rand(128) + 0.5)
    net = diffusers.LTXVideoTransformer3DModel(in_channels=128, out_channels=128, patch_size=1, patch_size_t=1,
                                               num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
                                               num_layers=1, caption_channels=16).eval()
    pipe = diffusers.LTXPipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=None,
                                 tokenizer=None, transformer=net)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_video(pipe, callback=None, *, batch=1, height=32, width=64, num_frames=9, steps=3) -> torch.Tensor:
    """The pipeline's latents (output_type="latent"): Wan (B, C, T, H, W), LTX tokens (B, T*H*W, 128)."""
    gen = torch.Generator().manual_seed(1)
    kwargs = {"height": height, "width": width, "num_frames": num_frames, "num_inference_steps": steps,
              "guidance_scale": 1.0, "output_type": "latent", "generator": torch.Generator().manual_seed(3),
              "prompt_embeds": torch.randn(batch, 5, 16, generator=gen)}
    if isinstance(pipe, diffusers.LTXPipeline):
        kwargs["prompt_attention_mask"] = torch.ones(batch, 5)
    if callback is not None:
        kwargs |= {"callback_on_step_end": callback, "callback_on_step_end_tensor_inputs": ["latents"]}
    return pipe(**kwargs).frames
