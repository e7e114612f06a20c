"""Watch a diffusers pipeline denoise: live previews of the denoised estimate x0 at every step.

By default this builds a tiny random Stable Diffusion pipeline, so it runs offline in seconds; its previews are
noise because its weights are random. Pass --model to run a real checkpoint, e.g.

    python examples/diffusers/live_preview.py --model black-forest-labs/FLUX.2-klein-4B \
        --prompt "a lighthouse at dusk" --device cuda --out lighthouse --height 768 --width 1024

It writes step-NNNN.png frames (a grid of every batch item), preview.webp (the animation) and grid.png (the last
step) into --out, and prints the size of each preview as the pipeline hands it over.
"""

from __future__ import annotations

import argparse

import torch

from latentbridge.integrations.diffusers.preview import LivePreview


def tiny_random_pipeline(scheduler: str):
    """A Stable Diffusion 1.x-class pipeline with random weights; it takes prompt embeddings directly (offline)."""
    import diffusers

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, cross_attention_dim=32, norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = diffusers.AutoencoderKL(block_out_channels=(32, 64), latent_channels=4, norm_num_groups=8,
                                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    schedulers = {"euler": diffusers.EulerDiscreteScheduler, "euler-ancestral": diffusers.EulerAncestralDiscreteScheduler,
                  "ddim": diffusers.DDIMScheduler, "dpm++2m": diffusers.DPMSolverMultistepScheduler}
    return diffusers.StableDiffusionPipeline(vae=vae.eval(), text_encoder=None, tokenizer=None, unet=unet.eval(),
                                             scheduler=schedulers[scheduler](), safety_checker=None,
                                             feature_extractor=None, requires_safety_checker=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="diffusers model id or folder (default: a tiny random pipeline, offline)")
    parser.add_argument("--prompt", default="a red house by a lake")
    parser.add_argument("--scheduler", default="euler", help="for the tiny pipeline: euler, euler-ancestral, ddim, dpm++2m")
    parser.add_argument("--method", default="auto", help="auto, linear, neural or tiny")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2, help="images per prompt (the frames are grids of all)")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="live-preview", help="folder for the frames, preview.webp and grid.png")
    args = parser.parse_args()

    if args.model:
        from diffusers import DiffusionPipeline

        dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
        pipe = DiffusionPipeline.from_pretrained(args.model, torch_dtype=dtype).to(args.device)
        prompt = {"prompt": args.prompt}
    else:
        pipe = tiny_random_pipeline(args.scheduler)
        prompt = {"prompt_embeds": torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(1)), "guidance_scale": 1.0}

    def show(step: int, images: list) -> None:
        print(f"step {step:3d}: {len(images)} preview(s) of {images[0].size[0]}x{images[0].size[1]}")

    live = LivePreview(pipe, method=args.method, out_dir=args.out, on_image=show, height=args.height, width=args.width)
    pipe(**prompt, num_images_per_prompt=args.batch, num_inference_steps=args.steps, height=args.height,
         width=args.width, output_type="latent" if not args.model else "pil",
         callback_on_step_end=live, callback_on_step_end_tensor_inputs=["latents"])
    print(f"{args.out}/: {len(live.frames)} frames, preview.webp, grid.png"
          + (f"; {len(live.errors)} preview problem(s): {live.errors}" if live.errors else ""))


if __name__ == "__main__":
    main()
