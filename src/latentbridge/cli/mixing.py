"""``latentbridge plot-schedule``: see a mixing schedule before using it; and the mixing section of the demo."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import demo_data, io, metrics, mixing, upscale
from ..mixing.gaussian_prior import SpectralGaussian, high_frequency_share
from .common import add_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot-schedule", help="plot iterative-mixing schedules (weight of the noised copy per step) as a PNG",
                       description="Plot the weight of the noised copy before each sampler step; the sampler's own "
                                   "latent gets 1 minus it. 'cosine' is DemoFusion's corrected form, 'cosine_mixer' the "
                                   "Iterative Mixer node pack's curve.")
    p.add_argument("--schedule", action="append", choices=mixing.SCHEDULES,
                   help="schedule to plot; repeat to compare (default: cosine)")
    p.add_argument("--alpha-1", action="append", type=float, dest="alpha_1",
                   help="exponent / steepness; repeat to compare (default: 3)")
    p.add_argument("--steps", type=int, default=30, help="sampler steps [%(default)s]")
    p.add_argument("--start", type=float, default=0.0, help="fraction of the steps where the fade begins [%(default)s]")
    p.add_argument("--stop", type=float, default=1.0, help="fraction where it reaches 0; above 1 stretches [%(default)s]")
    p.add_argument("--min", type=float, default=0.0, dest="minimum", help="lower clamp of the weight [%(default)s]")
    p.add_argument("--max", type=float, default=1.0, dest="maximum", help="upper clamp of the weight [%(default)s]")
    p.add_argument("--values", action="store_true", help="also print every weight")
    add_output(p, help_text="image to write (.png)")
    p.set_defaults(func=cmd_plot_schedule)


def schedule_series(names: list[str], alphas: list[float], steps: int, **options: float) -> dict[str, tuple[list, list]]:
    """Named (steps, weights) series for :func:`io.line_plot`; alpha_1 is left out of names that ignore it."""
    series = {}
    for name in names:
        for alpha in ([alphas[0]] if name == "linear" else alphas):
            label = name if name == "linear" else f"{name} a={alpha:g}"
            w = mixing.schedule(name, steps, alpha_1=alpha, **options)
            series[label] = (list(range(steps)), w.tolist())
    return series


def _plot(series: dict[str, tuple[list, list]], steps: int) -> object:
    return io.line_plot(series, title=f"weight of the noised copy before each step ({steps} steps); the sampler's "
                        "latent gets 1 - w", xlabel="step", ylabel="w")


def cmd_plot_schedule(args: argparse.Namespace) -> int:
    options = {"start": args.start, "stop": args.stop, "minimum": args.minimum, "maximum": args.maximum}
    series = schedule_series(args.schedule or ["cosine"], args.alpha_1 or [3.0], args.steps, **options)
    path = io.save_pil(args.output, _plot(series, args.steps), overwrite=args.overwrite)
    for label, (_, w) in series.items():
        mid = w[len(w) // 2]
        print(f"{label}: first {w[0]:.4f}, middle {mid:.4f}, last {w[-1]:.4f}")
        if args.values:
            print("  " + " ".join(f"{v:.4f}" for v in w))
    print(f"wrote {path}")
    return 0


def demo(out: Path, ctx: demo_data.DemoContext) -> list[str]:
    """Schedule plots, and a 2x pixel-space upscale with mixing driven by an exact Gaussian image prior."""
    steps = 30
    series = schedule_series(["cosine", "cosine_mixer", "linear", "logistic"], [1.0, 3.0], steps)
    io.save_pil(out / "mixing_schedules.png", _plot(series, steps), overwrite=True)
    lines = [f"schedules: {out / 'mixing_schedules.png'} (cosine = DemoFusion, cosine_mixer = the Iterative Mixer's "
             "orientation; they agree only at alpha 1)"]

    # The pixel space (RGB in [-1, 1], a flow model's space) lets a closed-form prior stand in for a diffusion model.
    space = "chroma_radiance"
    images = ctx.images * 2 - 1
    shown = [ctx.names.index(n) for n in ("astronaut", "bridge") if n in ctx.names] or [0]
    prior = SpectralGaussian.fit(images[[i for i in range(len(images)) if i not in shown]])
    truth = images[shown]
    small = F.interpolate(truth, scale_factor=0.5, mode="bilinear", antialias=True)
    big = upscale.upscale(small, space, 2, method="bicubic", domain="model")
    prediction, sigmas = mixing.prediction_of(space), torch.linspace(1, 0, 21)
    runs = {"bicubic": big}
    variants = {"mixing alpha 3": {"alpha_1": 3.0}, "mixing alpha 1, stop 1.5": {"alpha_1": 1.0, "stop": 1.5},
                "no mixing": {"schedule": torch.zeros(len(sigmas) - 1)}}
    for label, options in variants.items():
        runs[label] = mixing.sample(prior.denoiser(prediction), big, sigmas, prediction=prediction, seed=0, disable=True, **options)
    grid = torch.cat([truth, *runs.values()])
    io.save_image(out / "mixing_upscale.png", (grid.clamp(-1, 1) + 1) / 2, nrow=len(shown), overwrite=True)
    lines.append(f"upscale 2x: {out / 'mixing_upscale.png'} (rows: photo, " + ", ".join(runs) + ")")
    lines.append(f"  model: an exact Gaussian image prior ({prior!r}) standing in for a diffusion model, so it "
                 "adds texture, not detail")
    share = high_frequency_share(truth).mean().item()
    for label, result in runs.items():
        psnr = metrics.psnr(result.flatten()[None], truth.flatten()[None], low=-1.0).item()
        hf = high_frequency_share(result).mean().item() / share
        lines.append(f"  {label:<26} PSNR to the photo {psnr:5.1f} dB, high-frequency power {hf:4.2f}x the photo's")
    return lines
