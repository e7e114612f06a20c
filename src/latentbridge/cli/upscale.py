"""``latentbridge upscale``: resize a latent file by a ratio or to a pixel size, learned or plain."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import demo_data, io, spaces
from ..errors import InputError, WeightsNotFoundError
from ..upscale.api import METHODS
from ..upscale.plain import pixel_size
from .common import add_latent_input, add_output, check_output, read_latent, write_latent


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upscale", help="resize a latent: learned upscaler ('nn') or plain interpolation")
    add_latent_input(p)
    p.add_argument("--scale", type=float, help="ratio, e.g. 2 or 1.5 (0.5 shrinks)")
    p.add_argument("--width", type=int, help="target width in image pixels (instead of --scale; alone it keeps the "
                   "aspect ratio)")
    p.add_argument("--height", type=int, help="target height in image pixels (instead of --scale)")
    p.add_argument("--method", default="nn", choices=METHODS,
                   help="nn: the space's learned upscaler; the others interpolate the latent [%(default)s]")
    p.add_argument("--model", help="learned upscaler file to use instead of the space's own")
    p.add_argument("--frames", type=int, help="video latents: also resample the frame axis to this many latent "
                   "frames (linear, first and last kept; 2T-1 doubles the frame rate) [keep T]")
    add_output(p, help_text="output latent file (format by extension); ComfyUI extras such as noise_mask follow")
    p.set_defaults(func=cmd_upscale)


def latent_size(args: argparse.Namespace, hw: tuple[int, int], sp: spaces.LatentSpace, domain: str
                ) -> tuple[tuple[int, int] | None, float | None]:
    """(size, None) from --width/--height in image pixels, or (None, scale) from --scale."""
    if args.scale is not None:
        if args.width is not None or args.height is not None:
            raise InputError("give either --scale or --width/--height, not both")
        return None, args.scale
    if args.width is None and args.height is None:
        raise InputError("say how big the result should be: --scale X, or --width/--height in pixels")
    return pixel_size(hw, sp, domain, width=args.width, height=args.height), None


def cmd_upscale(args: argparse.Namespace) -> int:
    from ..upscale import upscale_samples

    check_output(args.output, args)
    lf, sp, domain = read_latent(args.latent, args)
    size, scale = latent_size(args, tuple(lf.tensor.shape[-2:]), sp, domain)
    start = time.perf_counter()
    result = upscale_samples({"samples": lf.tensor, **lf.extras}, sp, scale, size=size, method=args.method,
                             domain=domain, model=args.model, frames=args.frames)
    seconds = time.perf_counter() - start
    out = result.pop("samples")
    extras = {k: v for k, v in result.items() if isinstance(v, torch.Tensor)}
    path = write_latent(args, out, sp, domain, extras=extras,
                        metadata={"latentbridge.upscaled_from": "x".join(map(str, lf.tensor.shape[-2:])),
                                  "latentbridge.upscale_method": args.method})
    d = sp.downscale_in(domain)
    print(f"{path}: {sp.id} ({domain}) {tuple(lf.tensor.shape)} -> {tuple(out.shape)}, image "
          f"{lf.tensor.shape[-1] * d}x{lf.tensor.shape[-2] * d} -> {out.shape[-1] * d}x{out.shape[-2] * d} px, "
          f"{args.method} in {seconds * 1000:.1f} ms")
    return 0


def demo(out: Path, ctx: demo_data.DemoContext) -> list[str]:
    """2x upscales side by side: nearest | bicubic | learned, of the bundled latents (or the photos in pixel space)."""
    from ..upscale import upscale

    lines, rows, shown = [], [], []
    for name, lf in ctx.latents.items():
        sp, domain = spaces.get(lf.space) if lf.space else None, lf.domain or "raw"
        if sp is None or sp.rgb_factors is None:
            continue  # shown through the linear previewer, which needs factors
        small = lf.tensor.float()[:1]
        methods = ["nearest", "bicubic", "nn"]
        results = {}
        for m in methods:
            try:
                upscale(small, sp, 2, method=m, domain=domain)  # loads the model: time the second call
            except WeightsNotFoundError:
                continue
            start = time.perf_counter()
            results[m] = (upscale(small, sp, 2, method=m, domain=domain), time.perf_counter() - start)
        pictures = [_look(r, sp, domain) for r, _ in results.values()]
        if shown and list(results) != shown:
            continue  # one picture, one set of columns
        shown = list(results)
        size = pictures[0].shape[-2:]
        rows.append(torch.cat([F.interpolate(p, size=size, mode="bilinear", antialias=True) for p in pictures], 3))
        timing = ", ".join(f"{m} {t * 1000:.1f} ms" for m, (_, t) in results.items())
        lines.append(f"{name} ({sp.id}) {tuple(small.shape[-2:])} -> {tuple(results['nearest'][0].shape[-2:])}: {timing}")
    if rows:
        path = out / "upscale.png"
        io.save_image(path, torch.cat(rows, 2), overwrite=True)
        return [f"2x latent upscales: {path} (columns: {' | '.join(shown)}, seen through the cheap previewer)", *lines]
    return _pixel_demo(out, ctx)


def _look(latent: torch.Tensor, sp: spaces.LatentSpace, domain: str) -> torch.Tensor:
    """A picture of a latent without a VAE: the space's cheap previewer at image resolution."""
    from ..preview import preview

    d = sp.downscale_in(domain)
    return preview(latent, sp, domain=domain, size=(latent.shape[-2] * d, latent.shape[-1] * d)).float()


def _pixel_demo(out: Path, ctx: demo_data.DemoContext) -> list[str]:
    """No example latents: the plain methods on the photos at 1/4 size in the pixel space (RGB as a latent)."""
    from ..upscale import upscale

    images = ctx.images[:3] * 2 - 1
    small = F.interpolate(images, scale_factor=0.25, mode="bilinear", antialias=True)
    columns = [images] + [upscale(small, "chroma_radiance", 4, method=m, domain="raw")
                          for m in ("nearest", "bilinear", "bicubic")]
    path = out / "upscale.png"
    io.save_image(path, torch.cat(columns, 3).add(1).div(2).clamp(0, 1), overwrite=True)
    return [f"no example latents are bundled: 4x plain upscales in pixel space: {path} "
            "(columns: photo | nearest | bilinear | bicubic)"]
