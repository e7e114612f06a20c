"""Hand one diffusers pipeline's latents to another: convert_latents reads both VAE configs and runs the interposers.

This builds small random pipelines (only their VAE configs and classes matter here), so it runs offline in seconds:

* FLUX.2 -> Sana: the pipeline's tokens (B, L, 128) become the (B, 32, h, w) latents SanaPipeline takes, through the
  flux2 -> sana interposer (the shipped model, or one in --models-dir);
* SDXL -> a Playground-v2.5-style SDXL pipeline (per-channel latents_mean/std): the same VAE space, so only the
  normalisation changes, exactly;
* a FLUX.2 VAE's own latent (32 channels, not normalised) -> what Flux2Pipeline(latents=...) takes.

With real pipelines it is the same call, e.g.

    flux = Flux2KleinPipeline.from_pretrained("black-forest-labs/FLUX.2-klein-4B")
    sana = SanaPipeline.from_pretrained("Efficient-Large-Model/Sana_1600M_1024px_diffusers")
    tokens = flux(prompt, output_type="latent", height=1024, width=1024).images
    image = sana(prompt, latents=convert_latents(tokens, flux, sana, height=1024, width=1024)).images[0]

(a Sana pipeline started from a converted latent needs its sampling to start below full noise, e.g. through an
img2img-style pipeline or iterative mixing; this example stops at the conversion).
"""

from __future__ import annotations

import argparse

import torch

from latentbridge.errors import InputError
from latentbridge.integrations.diffusers import convert_latents
from latentbridge.interposer import plan


def pipelines() -> dict:
    """Small random pipelines of four kinds (no text encoders or denoisers: conversion only reads their VAEs)."""
    import diffusers

    torch.manual_seed(0)
    levels = dict(block_out_channels=(8, 8, 8, 8), norm_num_groups=4)
    kl = dict(levels, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    flux2_vae = diffusers.AutoencoderKLFlux2(layers_per_block=1, **levels)
    flux2_vae.bn.running_mean.copy_(torch.randn(128) * 0.3)  # stand-ins for the real VAE's running statistics
    flux2_vae.bn.running_var.copy_(torch.rand(128) * 0.6 + 2.9)
    dc = diffusers.AutoencoderDC(latent_channels=32, encoder_block_out_channels=(8,) * 6,
                                 decoder_block_out_channels=(8,) * 6, encoder_layers_per_block=(1,) * 6,
                                 decoder_layers_per_block=(1,) * 6, attention_head_dim=8, scaling_factor=0.41407)
    xl = dict(text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None, unet=None, scheduler=None,
              add_watermarker=False)
    playground = diffusers.AutoencoderKL(latent_channels=4, scaling_factor=0.5, latents_mean=[-1.6574, 1.886, -1.383, 2.5155],
                                         latents_std=[8.4927, 5.9022, 6.5498, 5.2299], **kl)
    return {
        "flux2": diffusers.Flux2KleinPipeline(scheduler=None, vae=flux2_vae, text_encoder=None, tokenizer=None,
                                              transformer=None),
        "sana": diffusers.SanaPipeline(tokenizer=None, text_encoder=None, vae=dc, transformer=None, scheduler=None),
        "sdxl": diffusers.StableDiffusionXLPipeline(vae=diffusers.AutoencoderKL(latent_channels=4, scaling_factor=0.13025,
                                                                                **kl), **xl),
        "playground": diffusers.StableDiffusionXLPipeline(vae=playground, **xl),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", help="folder of interposer files (default: the shipped models and the usual "
                        "model folders)")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=768)
    args = parser.parse_args()
    pipes = pipelines()
    gen = torch.Generator().manual_seed(1)
    h, w = args.height, args.width

    tokens = torch.randn(1, (h // 16) * (w // 16), 128, generator=gen)  # as Flux2 output_type="latent" gives them
    try:
        route = plan("flux2", "sana", models_dir=args.models_dir)
        sana = convert_latents(tokens, pipes["flux2"], pipes["sana"], height=h, width=w, models_dir=args.models_dir)
        print(f"FLUX.2 -> Sana: tokens {tuple(tokens.shape)} -> latents {tuple(sana.shape)} for SanaPipeline; "
              f"route {route.describe()}")
    except InputError as e:
        print(f"FLUX.2 -> Sana: not converted: {e}")

    x = torch.randn(2, 4, h // 8, w // 8, generator=gen) * 0.13025 * 5  # SDXL model-domain latents
    pg = convert_latents(x, pipes["sdxl"], pipes["playground"])
    back = convert_latents(pg, pipes["playground"], pipes["sdxl"])
    print(f"SDXL -> Playground v2.5 normalisation: {tuple(x.shape)}, std {x.std():.3f} -> {pg.std():.3f}; "
          f"round trip max error {(back - x).abs().max():.2e}")

    raw = torch.randn(1, 32, h // 8, w // 8, generator=gen) * 1.7  # what AutoencoderKLFlux2.encode gives
    latents = convert_latents(raw, pipes["flux2"].vae, pipes["flux2"])
    print(f"FLUX.2 VAE latent {tuple(raw.shape)} (std {raw.std():.2f}) -> Flux2Pipeline latents= "
          f"{tuple(latents.shape)} (std {latents.std():.2f}, patchified and batch-norm normalised)")


if __name__ == "__main__":
    main()
