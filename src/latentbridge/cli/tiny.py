"""``latentbridge encode`` and ``decode``: images to latents and back through a tiny autoencoder (TAESD family)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .. import demo_data, io, spaces
from ..errors import InputError, LatentBridgeError
from .common import add_latent_input, add_output, read_latent

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="tiny autoencoder: a name (taesd, taesdxl, taesd3, taef1, taef2, taesana) or a "
                   "weight file [the tiny autoencoder of --space, or of the latent's stated space]")
    p.add_argument("--models-dir", help="look for named models only in this folder")
    p.add_argument("--device", default="cpu", help="where the network runs (cpu, cuda, mps) [%(default)s]")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="compute precision [%(default)s]")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="images to a latent file with a tiny autoencoder")
    p.add_argument("images", nargs="+", help="image files of one size (a batch)")
    _add_model_options(p)
    p.add_argument("--space", help="latent space of the output when the model can't tell (e.g. for a 4-channel file)")
    p.add_argument("--domain", choices=spaces.DOMAINS, default="taesd", help="domain of the output latent: taesd "
                   "(tiny autoencoders), model (sampler/diffusers) or raw (VAE/ComfyUI) [%(default)s]")
    p.add_argument("--fit", choices=("error", "pad", "crop"), default="error", help="images whose size is not a "
                   "multiple of the downscale: refuse, pad the bottom/right edges, or crop them [%(default)s]")
    add_output(p, help_text="output latent file (.safetensors, .latent, .npy, .pt)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="a latent file to images with a tiny autoencoder")
    add_latent_input(p)
    _add_model_options(p)
    p.add_argument("--grid", action="store_true", help="write a batch as one grid picture instead of numbered files")
    p.add_argument("--tile", type=int, help="decode in tiles of this many latent pixels (bounded memory, same result)")
    add_output(p, help_text="output picture (.png, .jpg, .webp); a batch becomes OUT_000.png, OUT_001.png, ...")
    p.set_defaults(func=cmd_decode)


def _load(args: argparse.Namespace, space: spaces.LatentSpace | None):
    from .. import tiny

    name = args.model or (space.tiny if space is not None else None)
    if not name:
        what = f"{space.id} has no tiny autoencoder" if space is not None else "the latent space is unknown"
        raise InputError(f"{what}: say which tiny autoencoder to use with --model (one of {', '.join(tiny.NAMES)}, "
                         "or a weight file)")
    return tiny.load(name, device=args.device, dtype=DTYPES[args.dtype], space=space, models_dir=args.models_dir)


def cmd_encode(args: argparse.Namespace) -> int:
    io.check_writable(args.output, overwrite=args.overwrite)
    space = spaces.get(args.space) if args.space else None
    model = _load(args, space)
    if not model.has_encoder:
        raise InputError(f"{args.model or model.name}: this file holds no encoder; pass a model with one")
    images = [io.load_image(p) for p in args.images]
    sizes = {tuple(x.shape[-2:]) for x in images}
    if len(sizes) > 1:
        listed = ", ".join(f"{Path(p).name} {x.shape[-2]}x{x.shape[-1]}" for p, x in zip(args.images, images, strict=True))
        raise InputError(f"the images differ in size ({listed}); a latent batch needs one size: encode them one at a "
                         "time or resize them first")
    batch = torch.cat(images)
    start = time.perf_counter()
    latent = model.encode(batch, domain=args.domain, fit=args.fit)
    seconds = time.perf_counter() - start
    sp = model.space
    meta = {"latentbridge.tiny_model": str(args.model or model.name),
            "latentbridge.images": json.dumps([Path(p).name for p in args.images])}
    path = io.save_latent(args.output, latent, space=sp.id if sp else None, domain=args.domain, metadata=meta,
                          overwrite=args.overwrite)
    print(f"{path}: {len(images)} image(s) {tuple(batch.shape[-2:])} -> {tuple(latent.shape)} "
          f"({sp.id if sp else 'unknown space'}, {args.domain} domain) in {seconds:.2f} s")
    return 0


def output_paths(output: str, count: int, *, grid: bool) -> list[Path]:
    """Where a decoded batch goes: the output itself, or numbered files beside it."""
    out = Path(output)
    if count == 1 or grid:
        return [out]
    return [out.with_name(f"{out.stem}_{i:03d}{out.suffix}") for i in range(count)]


def cmd_decode(args: argparse.Namespace) -> int:
    lf, space, domain = read_latent(args.latent, args, need_space=False)
    latent = lf.tensor
    if space is None and domain != "taesd" and not args.domain:
        domain = "taesd"  # unknown space: the only domain a bare tiny model can take
    targets = output_paths(args.output, latent.shape[0], grid=args.grid)
    for t in targets:
        io.check_writable(t, overwrite=args.overwrite)
    model = _load(args, space)
    start = time.perf_counter()
    images = model.decode(latent.float(), domain=domain, tile=args.tile)
    seconds = time.perf_counter() - start
    if args.grid or len(targets) == 1:
        io.save_image(targets[0], images, overwrite=args.overwrite)
    else:
        for t, image in zip(targets, images, strict=True):
            io.save_image(t, image[None], overwrite=args.overwrite)
    where = str(targets[0]) if len(targets) == 1 else f"{targets[0]} .. {targets[-1].name}"
    print(f"{where}: {tuple(latent.shape)} ({space.id if space else 'unknown space'}, {domain} domain) -> "
          f"{len(images)} image(s) {tuple(images.shape[-2:])} in {seconds:.2f} s")
    return 0


def demo(out: Path, ctx: demo_data.DemoContext) -> list[str]:
    """Round trip of the example photos through each tiny autoencoder on disk: photo | decoded."""
    from .. import tiny

    lines, rows = [], []
    images = ctx.images
    for name in tiny.NAMES:
        try:
            model = tiny.load(name, download=False)
        except LatentBridgeError:
            continue
        if not (model.has_encoder and model.has_decoder):
            lines.append(f"{name}: only the {'encoder' if model.has_encoder else 'decoder'} is on disk; no round trip")
            continue
        start = time.perf_counter()
        latent = model.encode(images)
        decoded = model.decode(latent).clamp(0, 1)
        ms = (time.perf_counter() - start) * 1e3 / len(images)
        psnr = (-10 * torch.log10(((decoded - images) ** 2).mean((1, 2, 3)))).mean()
        lines.append(f"{name}: {tuple(images.shape[-2:])} -> {tuple(latent.shape[1:])} and back, mean PSNR "
                     f"{psnr:.2f} dB, {ms:.0f} ms per image (encode + decode, {model.dtype}, {model.device})")
        rows.append(torch.cat([images, decoded], 3))
    if not rows:
        return lines or ["no tiny autoencoder on disk: put taef2_encoder.pth and taef2_decoder.pth (github.com/"
                         "madebyollin/taesd) in a folder named in $LATENTBRIDGE_MODELS"]
    io.save_image(out / "tiny.png", torch.cat(rows), nrow=2, overwrite=True)
    return [f"{out / 'tiny.png'}: each pair is a photo | its tiny-autoencoder round trip", *lines]
