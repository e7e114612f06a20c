"""``latentbridge convert``: a latent file of one space to another through the interposers, without a VAE."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from .. import demo_data, devices, io, spaces
from ..errors import AmbiguousError, InputError
from .common import add_output, check_output, load_nonempty, write_latent


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a latent to another space through interposers (no VAE round trip)")
    p.add_argument("latent", help="latent file (.safetensors, .latent, .npy, .pt)")
    p.add_argument("--to", required=True, help="target space (see 'latentbridge spaces'), e.g. sana, sdxl, v1")
    p.add_argument("--from", dest="space", help="source space when the file's metadata does not say; detected "
                   "otherwise (refused when detection is ambiguous)")
    p.add_argument("--domain", choices=spaces.DOMAINS, help="domain of the file (raw: VAE/ComfyUI, model: "
                   "sampler/diffusers, taesd: tiny autoencoders); the output keeps it")
    p.add_argument("--models-dir", help="folder of interposer files; with offline mode on, only these are used")
    p.add_argument("--device", help="where the networks run (cpu, cuda, ...) [the CPU]")
    p.add_argument("--dry-run", action="store_true", help="print the route and its expected cost, convert nothing")
    add_output(p, required=False, help_text="output latent file (format by extension)")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from ..interposer import convert, plan

    dst = spaces.get(args.to)
    if not args.dry_run and not args.output:
        raise InputError("say where to write the result with -o OUT (or pass --dry-run to only plan)")
    if args.output:
        check_output(args.output, args)
    device = devices.resolve(args.device) if args.device else None
    lf = load_nonempty(args.latent, space=args.space, domain=args.domain)
    src, domain = _source(lf)
    route = plan(src, dst, models_dir=args.models_dir)
    print(f"route: {route.describe()}")
    for step in route.steps:
        print(f"  {step.describe()}")
    if args.dry_run:
        return 0
    start = time.perf_counter()
    out = convert(lf.tensor, src, dst, domain=domain, models_dir=args.models_dir, device=device)
    seconds = time.perf_counter() - start
    path = write_latent(args, out, dst, domain, metadata={"latentbridge.converted_from": src.id,
                                                          "latentbridge.route": route.describe()})
    print(f"{path}: {src.id} {tuple(lf.tensor.shape)} -> {dst.id} {tuple(out.shape)} ({domain} domain) "
          f"in {seconds:.3f} s")
    return 0


def _source(lf: io.LatentFile) -> tuple[spaces.LatentSpace, str]:
    """The source space and domain: stated (--from/--domain or metadata), else detected; ambiguity is refused."""
    if lf.space and lf.domain:
        return spaces.get(lf.space), lf.domain
    found = spaces.detect(lf.tensor, {k: v for k, v in {"space": lf.space, "domain": lf.domain}.items() if v})
    if found.ambiguous:
        raise AmbiguousError(f"{lf.path}: cannot tell which space the latent is from: {found.ranking}; only its "
                             f"statistics separate them and none reaches {spaces.MIN_CONFIDENCE:.0%}. Say which "
                             "with --from SPACE (and --domain)")
    if found.best is None:
        raise InputError(f"{lf.path}: {found.summary}")
    return found.best.space, found.best.domain


def demo(out: Path, ctx: demo_data.DemoContext) -> list[str]:
    """Convert each bundled latent through the interposers on disk; pictures: latent | round trip | converted."""
    from ..interposer import convert, discover, plan

    models = [m for m in discover(hub=False) if m.local]
    size = tuple(ctx.images.shape[-2:])
    lines, rows = [], []
    for name, lf in ctx.latents.items():
        if not lf.space:
            continue
        src, domain = spaces.get(lf.space), lf.domain or "raw"
        for dst in sorted({m.dst for m in models if m.src == src.id}):
            start = time.perf_counter()
            y = convert(lf.tensor, src, dst, domain=domain)
            ms = (time.perf_counter() - start) * 1e3
            route = plan(src, dst, models=models)
            lines.append(f"{name}: {src.id} {tuple(lf.tensor.shape)} -> {dst} {tuple(y.shape)} ({domain}) in {ms:.0f} ms, "
                         f"{route.gflops_per_megapixel():.1f} GFLOP per megapixel")
            try:
                back = convert(y, dst, src, domain=domain)
            except InputError:
                back = None
            rows.append(torch.cat([_picture(lf.tensor, src, domain, size), _picture(back, src, domain, size),
                                   _picture(y, spaces.get(dst), domain, size)], 3))
    if not lines:
        return ["no bundled latent has an interposer on disk to convert it"]
    io.save_image(out / "convert.png", torch.cat(rows), nrow=1, overwrite=True)
    return [f"{out / 'convert.png'}: each row is a latent's preview | after converting there and back | the "
            "converted latent's preview (grey: no previewer for that space)", *lines]


def _picture(latent: torch.Tensor | None, space: spaces.LatentSpace, domain: str, size: tuple[int, int]) -> torch.Tensor:
    """The first image of a preview of ``latent`` at ``size`` (neural previewer, else linear factors), or grey."""
    from ..preview import preview

    if latent is not None:
        for method in ("neural", "linear"):
            try:
                return preview(latent[:1].float(), space, method=method, domain=domain, size=size)
            except (InputError, FileNotFoundError):
                continue
    return torch.full((1, 3, *size), 0.5)
