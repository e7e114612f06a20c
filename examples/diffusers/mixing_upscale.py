"""Upscale a generation 2x with iterative mixing (DemoFusion's skip residual) on a diffusers pipeline.

By default this builds a tiny random Stable Diffusion pipeline, so it runs offline in seconds; its pictures are
noise because its weights are random. Pass --model to run a real checkpoint, e.g.

    python examples/diffusers/mixing_upscale.py --model stabilityai/stable-diffusion-xl-base-1.0 \
        --prompt "a lighthouse at dusk" --device cuda --out lighthouse

It writes BASE.png (the pipeline's own generation) and UPSCALED.png (2x, mixed and cleaned up) into --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from latentbridge import io
from latentbridge.integrations.diffusers.mixing import decode, mixing_upscale


def tiny_random_pipeline():
    """A Stable Diffusion 1.x-class pipeline with random weights and a 28-token vocabulary (offline)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {c: i for i, c in enumerate(letters)} | {c + "</w>": 26 + i for i, c in enumerate(letters)}
    vocab |= {"<|startoftext|>": 52, "<|endoftext|>": 53}
    text = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                                        vocab_size=54, max_position_embeddings=32, bos_token_id=52, eos_token_id=53,
                                        pad_token_id=53))
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=16, cross_attention_dim=32,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(32, 64), latent_channels=4, norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    return StableDiffusionPipeline(vae=vae.eval(), text_encoder=text.eval(), unet=unet.eval(),
                                   tokenizer=CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32),
                                   scheduler=EulerDiscreteScheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="diffusers model id or folder (default: a tiny random pipeline, offline)")
    parser.add_argument("--prompt", default="a red house by a lake")
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--steps", type=int, help="mixing steps (default: the family preset's; 8 for the tiny pipeline)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="mixing-upscale", help="folder for BASE.png and UPSCALED.png")
    args = parser.parse_args()

    if args.model:
        from diffusers import DiffusionPipeline

        dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
        pipe = DiffusionPipeline.from_pretrained(args.model, torch_dtype=dtype)
    else:
        pipe = tiny_random_pipeline()
        args.steps = args.steps or 8
    pipe.to(args.device)
    out = mixing_upscale(pipe, prompt=args.prompt, scale=args.scale, steps=args.steps, seed=args.seed)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    io.save_pil(folder / "BASE.png", decode(pipe, out.base_latents)[0], overwrite=True)
    io.save_pil(folder / "UPSCALED.png", out.images[0], overwrite=True)
    s = out.settings
    print(f"{tuple(out.base_latents.shape)} -> {tuple(out.latents.shape)} with {s.steps} {s.sampler} steps, "
          f"{s.schedule} alpha_1={s.alpha_1}, clean-up {s.cleanup}: {folder}/BASE.png, {folder}/UPSCALED.png")


if __name__ == "__main__":
    main()
