"""ComfyUI live previews: cost per sampling step of latentbridge's previewers beside ComfyUI's own, on a 1024-pixel
FLUX.2 latent, as milliseconds and as a fraction of one step of the full-size SD1.5 UNet at 512 px.

Runs inside a real ComfyUI tree (0.8 or newer) with ComfyUI's Python; everything is measured in this one process on
one CPU thread (``time.thread_time``, so other jobs on the machine inflate the wall times but not these):

* ComfyUI's ``latent2rgb``: the previewer ComfyUI's own ``get_previewer`` gives for ``Flux2`` (its 32 x 3 factors on
  the reshaped latent, first batch item);
* ComfyUI's ``taesd``: ComfyUI's TAESD previewer with its TAESD decoder built for 32 channels on the unpacked latent
  (random weights: ComfyUI 0.8 has no name for the TAEF2 file, so this is the cost of the decode it would run);
* latentbridge's previewers as ComfyUI gets them through the wrapped ``get_previewer``: ``auto`` (the neural
  previewer), ``latent2rgb`` (the fitted FLUX.2 factors) and ``taesd`` (the TAEF2 decoder, full size; throttled to
  ``LATENTBRIDGE_COMFY_PREVIEW_BUDGET`` of the wall time in a run, default 10%);
* one step: ComfyUI's SD1.5 UNet (``UNetModel`` with the SD1.5 configuration, 860M parameters, random fan-in-scaled
  weights) on a 64 x 64 latent with a 77-token context, batch 1 (a cfg > 1 step evaluates batch 2: twice that).

Every previewer call is ``decode_latent_to_preview_image("JPEG", x0)``: what a sampler's callback runs per step,
the PIL image included (the server's resize and JPEG encoding run on its event loop, not in the sampler).

    PYTHONPATH=/path/to/ComfyUI:src /path/to/comfy-venv/bin/python bench/bench_comfy_preview.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_WEIGHTS, markdown_table, require, write_result

TARGET = 0.02  # of one SD1.5 step


def cpu_seconds(fn, repeat: int, warmup: int = 1) -> tuple[float, float]:
    """Median (thread CPU seconds, wall seconds) of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def sd15_unet() -> torch.nn.Module:
    """ComfyUI's UNetModel in the SD1.5 configuration, random weights scaled by fan-in (biases 0, norms 1)."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet = UNetModel(image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                     channel_mult=[1, 2, 4, 4], num_heads=8, use_spatial_transformer=True, legacy=False,
                     transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
                     transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], context_dim=768,
                     operations=comfy.ops.disable_weight_init)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(p[0].numel()))
            else:
                p.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
    return unet.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    require(SHARED_WEIGHTS / "taef2_decoder.pth", "the real TAEF2 decoder")
    os.environ["LATENTBRIDGE_COMFY_PREVIEW_BUDGET"] = "1"  # measure every call: no throttling here
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    torch.set_flush_denormal(True)

    from comfy.cli_args import LatentPreviewMethod
    from comfy.cli_args import args as comfy_args

    comfy_args.cpu = True
    import folder_paths

    folder_paths.add_model_folder_path("vae_approx", str(SHARED_WEIGHTS), is_default=True)
    import comfy.latent_formats
    import latent_preview
    from comfy.taesd.taesd import TAESD

    from latentbridge.integrations.comfyui import live_preview, models

    models.register_model_folders()
    core_get_previewer = latent_preview.get_previewer
    live_preview.install(latent_preview)
    device, fmt = torch.device("cpu"), comfy.latent_formats.Flux2()
    x0 = torch.randn(1, 128, 64, 64, generator=torch.Generator().manual_seed(0))  # 1024 x 1024 px, model domain
    reps = 3 if args.quick else 10

    def previewer(method: str, get):
        comfy_args.preview_method = LatentPreviewMethod(method)
        return get(device, fmt)

    rows, costs = [], {}
    candidates = [("ComfyUI", "latent2rgb", previewer("latent2rgb", core_get_previewer)),
                  ("ComfyUI", "taesd", latent_preview.TAESDPreviewerImpl(TAESD(None, None, latent_channels=32))),
                  ("latentbridge", "auto", previewer("auto", latent_preview.get_previewer)),
                  ("latentbridge", "latent2rgb", previewer("latent2rgb", latent_preview.get_previewer)),
                  ("latentbridge", "taesd", previewer("taesd", latent_preview.get_previewer))]
    unpacked = fmt.latent_rgb_factors_reshape(x0)
    for who, method, p in candidates:
        latent = unpacked if (who, method) == ("ComfyUI", "taesd") else x0
        slow = method == "taesd"
        if slow:
            p.decode_latent_to_preview_image("JPEG", latent[..., :4, :4])  # load the weights outside the timing
        cpu, wall = cpu_seconds(lambda p=p, latent=latent: p.decode_latent_to_preview_image("JPEG", latent),
                                repeat=1 if slow and args.quick else (2 if slow else reps), warmup=0 if slow else 1)
        image = p.decode_latent_to_preview_image("JPEG", latent)[1]
        label = re.sub(r"/\S*/([^/\s)]+)", r"\1", getattr(p, "label", type(p).__name__))  # file names, not paths
        costs[(who, method)] = cpu
        rows.append([who, method, label, f"{image.size[0]}x{image.size[1]}", f"{cpu * 1e3:.1f}", f"{wall * 1e3:.1f}"])
        print(rows[-1], flush=True)

    unet = sd15_unet()
    noise, context = torch.randn(1, 4, 64, 64), torch.randn(1, 77, 768)
    step_cpu, step_wall = cpu_seconds(lambda: unet(noise, torch.tensor([500.0]), context=context),
                                      repeat=1 if args.quick else 3)
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    print(f"SD1.5 UNet step: {step_cpu:.2f} s CPU, {step_wall:.2f} s wall ({params:.0f}M parameters)", flush=True)
    for row, key in zip(rows, costs, strict=True):
        row.append(f"{costs[key] / step_cpu * 100:.3f}%")

    auto = costs[("latentbridge", "auto")] / step_cpu
    taesd = costs[("latentbridge", "taesd")] / step_cpu
    load = os.getloadavg()
    lines = [
        "# ComfyUI live previews: cost per step",
        "",
        "Made by `bench/bench_comfy_preview.py` inside a real ComfyUI 0.8 (ComfyUI's own `latent_preview`, the pack's "
        "wrapper installed as the pack installs it). Latent: FLUX.2 at 1024 x 1024 px (x0 as a sampler hands it "
        "over: 128 x 64 x 64, model domain). Cost: median CPU time of one thread (`time.thread_time`) of "
        "`decode_latent_to_preview_image`, the call a sampler's callback makes each step. One step: ComfyUI's SD1.5 "
        f"UNet ({params:.0f}M parameters, random weights) at 512 x 512 px, batch 1.",
        "",
        markdown_table(["made by", "preview method", "previewer", "image", "CPU ms", "wall ms", "of one SD1.5 step"],
                       rows),
        "",
        f"One SD1.5 UNet step: {step_cpu * 1e3:.0f} ms CPU ({step_wall * 1e3:.0f} ms wall). latentbridge's `auto` "
        f"previewer (the one ComfyUI now uses for FLUX.2) costs {auto * 100:.3f}% of it: target < {TARGET * 100:.0f}%: "
        f"{'met' if auto < TARGET else 'NOT met'}. ComfyUI's `taesd` row decodes with random weights "
        "(cost only; ComfyUI 0.8 has no name for TAEF2). latentbridge's `taesd` is a full-size TAEF2 decode "
        f"({taesd * 100:.1f}% of a step when run every step); in a run it is throttled to at most "
        "`LATENTBRIDGE_COMFY_PREVIEW_BUDGET` (default 10%) of the wall time, so its share stays under that. "
        "latentbridge shrinks a preview larger than `--preview-size` (512) itself, as the server would.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread. Load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores while it ran (other agents share "
        "the CPU: wall times are inflated by that contention, the CPU times much less).",
    ]
    write_result("comfy_preview", "\n".join(lines))


if __name__ == "__main__":
    main()
