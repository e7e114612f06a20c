"""``latentbridge encode`` and ``decode``: images (or a video file) to latents and back through a tiny autoencoder.

Video files go through the TAEHV family (PyAV, the ``video`` extra): the clip's frame rate is kept in the latent
file's metadata and written back on decode; frame counts follow upstream's taehv.py (see docs/taehv.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .. import demo_data, io, limits, metrics, spaces
from ..errors import InputError, LatentBridgeError
from .common import add_latent_input, add_output, check_output, read_latent

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_FPS = 24


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="tiny autoencoder: a name (taesd, taesdxl, taesd3, taef1, taef2, taesana; for video "
                   "taew2_1, taew2_2, taehv, taehv1_5, taeltx_2, ...) or a weight file [the tiny autoencoder of "
                   "--space, or of the latent's stated space]")
    p.add_argument("--models-dir", help="look for named models only in this folder")
    p.add_argument("--device", default="cpu", help="where the network runs (cpu, cuda, mps) [%(default)s]")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="compute precision [%(default)s]")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="images to a latent file with a tiny autoencoder")
    p.add_argument("images", nargs="+", help="image files of one size (a batch), or one video file (.mp4, .mov, "
                   ".mkv, .webm)")
    _add_model_options(p)
    p.add_argument("--space", help="latent space of the output when the model can't tell (e.g. for a 4-channel file)")
    p.add_argument("--domain", choices=spaces.DOMAINS, default="taesd", help="domain of the output latent: taesd "
                   "(tiny autoencoders), model (sampler/diffusers) or raw (VAE/ComfyUI) [%(default)s]")
    p.add_argument("--fit", choices=("error", "pad", "crop"), default="error", help="images whose size is not a "
                   "multiple of the downscale: refuse, pad the bottom/right edges, or crop them [%(default)s]")
    p.add_argument("--fps", help="frame rate to record for a video (e.g. 24 or 30000/1001) [the file's]")
    p.add_argument("--tile", type=int, help="encode images in tiles of this many latent pixels (bounded memory, same "
                   "result) [tiles of 1024 pixels above 4 megapixels]")
    add_output(p, help_text="output latent file (.safetensors, .latent, .npy, .pt)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="a latent file to images with a tiny autoencoder")
    add_latent_input(p)
    _add_model_options(p)
    p.add_argument("--grid", action="store_true", help="write a batch as one grid picture instead of numbered files")
    p.add_argument("--tile", type=int, help="decode in tiles of this many latent pixels (bounded memory, same result)")
    p.add_argument("--chunk", type=int, default=4, help="video latents: decode this many latent frames at a time "
                   "(bounded memory, same frames) [%(default)s]")
    p.add_argument("--fps", help="video latents: frame rate of the output [the one stored at encoding, else "
                   f"{DEFAULT_FPS}]")
    add_output(p, help_text="output picture (.png, .jpg, .webp); a batch becomes OUT_000.png, OUT_001.png, ...; "
               "a video latent becomes a video (.mp4, .mov, .mkv, .webm) or an animation (.webp, .gif)")
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
    _check_tile(args)
    check_output(args.output, args)
    for p in args.images:  # before a model is loaded or downloaded
        io.check_readable(p, "a video file" if io.is_video_path(p) else "an image file")
    space = spaces.get(args.space) if args.space else None
    model = _load(args, space)
    if not model.has_encoder:
        raise InputError(f"{args.model or model.name}: this file holds no encoder; pass a model with one")
    if any(io.is_video_path(p) for p in args.images):
        return _encode_video(args, model)
    images = [io.load_image(p) for p in args.images]
    sizes = {tuple(x.shape[-2:]) for x in images}
    if len(sizes) > 1:
        listed = ", ".join(f"{Path(p).name} {x.shape[-2]}x{x.shape[-1]}" for p, x in zip(args.images, images, strict=True))
        raise InputError(f"the images differ in size ({listed}); a latent batch needs one size: encode them one at a "
                         "time or resize them first")
    batch = torch.cat(images)
    start = time.perf_counter()
    latent = model.encode(batch, domain=args.domain, fit=args.fit, tile=args.tile)
    seconds = time.perf_counter() - start
    sp = model.space
    meta = {"latentbridge.tiny_model": str(args.model or model.name),
            "latentbridge.images": json.dumps([Path(p).name for p in args.images])}
    path = io.save_latent(args.output, latent, space=sp.id if sp else None, domain=args.domain, metadata=meta,
                          overwrite=args.overwrite)
    print(f"{path}: {len(images)} image(s) {tuple(batch.shape[-2:])} -> {tuple(latent.shape)} "
          f"({sp.id if sp else 'unknown space'}, {args.domain} domain) in {seconds:.2f} s")
    return 0


def _encode_video(args: argparse.Namespace, model) -> int:
    """One video file -> a 5-D latent with the clip's frame rate and frame count in the metadata."""
    if len(args.images) != 1:
        raise InputError(f"encode takes one video file at a time; got {len(args.images)} inputs")
    _need_video_model(model, "a video file")
    given = io.parse_fps(args.fps) if args.fps else None
    clip = io.load_video(args.images[0])
    fps = given or clip.fps
    count = clip.frames.shape[2]
    start = time.perf_counter()
    latent = model.encode(clip.frames, domain=args.domain, fit=args.fit)
    seconds = time.perf_counter() - start
    back = model.decoded_frames(latent.shape[2])
    if back != count:
        padded = latent.shape[2] * model.time_downscale
        how = f"padded with its last frame to {padded} frames, " if padded != count else ""
        sys.stderr.write(f"note: {count} frames is not 1 + {model.time_upscale}k: the clip was {how}encoded to "
                         f"{latent.shape[2]} latent frames, which decode to {back} frames (as taehv.py does)\n")
    sp = model.space
    meta = {"latentbridge.tiny_model": str(args.model or model.name), "latentbridge.video": Path(args.images[0]).name,
            "latentbridge.fps": str(fps), "latentbridge.frames": str(count)}
    path = io.save_latent(args.output, latent, space=sp.id if sp else None, domain=args.domain, metadata=meta,
                          overwrite=args.overwrite)
    print(f"{path}: {count} frames {tuple(clip.frames.shape[-2:])} at {float(fps):g} fps -> {tuple(latent.shape)} "
          f"({sp.id if sp else 'unknown space'}, {args.domain} domain) in {seconds:.2f} s")
    return 0


def _decode_video(args: argparse.Namespace, lf: io.LatentFile, space: spaces.LatentSpace | None, domain: str) -> int:
    """A 5-D latent -> one video (or animation) per batch item, at the stored or given frame rate."""
    latent = lf.tensor
    out = Path(args.output)
    if not (io.is_video_path(out) or out.suffix.lower() in (".webp", ".gif")):
        raise InputError(f"{args.latent} holds video latents {tuple(latent.shape)}: write a video (-o clip.mp4; "
                         f"{', '.join(io.VIDEO_EXTENSIONS)}) or an animation (.webp, .gif)")
    if args.chunk < 1:
        raise InputError(f"--chunk {args.chunk} is not a positive number of latent frames")
    targets = output_paths(args.output, latent.shape[0], grid=False)
    for t in targets:
        check_output(t, args)
    model = _load(args, space)
    _need_video_model(model, "a video latent")
    stored = lf.metadata.get("latentbridge.fps")
    fps = io.parse_fps(args.fps or stored or DEFAULT_FPS)
    if not (args.fps or stored):
        sys.stderr.write(f"note: {args.latent} stores no frame rate: writing {DEFAULT_FPS} fps (choose with --fps)\n")
    start = time.perf_counter()
    clips = model.decode(latent.float(), domain=domain, chunk=args.chunk)
    seconds = time.perf_counter() - start
    frames = clips.shape[2]
    if lf.metadata.get("latentbridge.frames", str(frames)) != str(frames):
        sys.stderr.write(f"note: the encoded clip had {lf.metadata['latentbridge.frames']} frames; its "
                         f"{latent.shape[2]} latent frames decode to {frames} (as taehv.py does)\n")
    for t, clip in zip(targets, clips, strict=True):
        if io.is_video_path(t):
            io.save_video(t, clip, fps=fps, overwrite=args.overwrite)
        else:
            io.save_animation(t, list(clip.unbind(1)), duration_ms=round(1000 / fps), overwrite=args.overwrite)
    where = str(targets[0]) if len(targets) == 1 else f"{targets[0]} .. {targets[-1].name}"
    print(f"{where}: {tuple(latent.shape)} ({space.id if space else 'unknown space'}, {domain} domain) -> "
          f"{len(targets)} clip(s) of {frames} frames {tuple(clips.shape[-2:])} at {float(fps):g} fps in {seconds:.2f} s")
    return 0


def _need_video_model(model, what: str) -> None:
    from .. import tiny

    if not isinstance(model, tiny.TinyVideoAutoencoder):
        raise InputError(f"{what} needs a tiny video autoencoder, and {model.name or 'this model'} is an image one: "
                         f"pass --model with a TAEHV-family name or file ({', '.join(tiny.VIDEO_NAMES[:6])}, ...)")


def _check_tile(args: argparse.Namespace) -> None:
    if args.tile is not None:
        limits.check_whole("tile", args.tile, unit="latent pixels")


def output_paths(output: str, count: int, *, grid: bool) -> list[Path]:
    """Where a decoded batch goes: the output itself, or numbered files beside it."""
    out = Path(output)
    if count == 1 or grid or not out.name:  # no name ('-o ""'): the check of the output names the problem
        return [out]
    return [out.with_name(f"{out.stem}_{i:03d}{out.suffix}") for i in range(count)]


def cmd_decode(args: argparse.Namespace) -> int:
    _check_tile(args)
    lf, space, domain = read_latent(args.latent, args, need_space=False)
    latent = lf.tensor
    if space is None and domain != "taesd" and not args.domain:
        domain = "taesd"  # unknown space: the only domain a bare tiny model can take
    if latent.ndim == 5:
        return _decode_video(args, lf, space, domain)
    targets = output_paths(args.output, latent.shape[0], grid=args.grid)
    for t in targets:
        check_output(t, args)
    model = _load(args, space)
    start = time.perf_counter()
    images = model.decode(latent.float(), domain=domain, tile=args.tile)
    seconds = time.perf_counter() - start
    if args.grid or len(targets) == 1:
        io.save_image(targets[0], images, overwrite=args.overwrite)
    else:
        io.save_images(targets, images, overwrite=args.overwrite)
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
        psnr = metrics.psnr(decoded, images).mean()
        lines.append(f"{name}: {tuple(images.shape[-2:])} -> {tuple(latent.shape[1:])} and back, mean PSNR "
                     f"{psnr:.2f} dB, {ms:.0f} ms per image (encode + decode, {model.dtype}, {model.device})")
        rows.append(torch.cat([images, decoded], 3))
    if not rows:
        return lines or ["no tiny autoencoder on disk: put taef2_encoder.pth and taef2_decoder.pth (github.com/"
                         "madebyollin/taesd) in a folder named in $LATENTBRIDGE_MODELS"]
    io.save_image(out / "tiny.png", torch.cat(rows), nrow=2, overwrite=True)
    return [f"{out / 'tiny.png'}: each pair is a photo | its tiny-autoencoder round trip", *lines]
