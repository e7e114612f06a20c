"""Preview commands: ``preview`` (latent files to pictures) and ``fit-preview`` (factors from images)."""

from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

import torch

from .. import demo_data, io, limits, spaces
from ..errors import InputError, LatentBridgeError
from ..preview import (
    FORMS,
    Factors,
    best_form,
    best_method,
    builtin,
    fit_factors,
    load_factors,
    preview,
    resize,
    save_factors,
    score_factors,
)
from ..preview.fit import check_options
from .common import add_output, check_output, read_latent

AUTO = "auto"
ANIMATIONS = (".webp", ".gif")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="latent file(s) to a picture: grid of a batch, or an animation; a video "
                       "latent (B, C, T, H, W) gives one animation per batch item")
    p.add_argument("latent", nargs="+", help="latent file(s) (.safetensors, .latent, .npy, .pt)")
    p.add_argument("--space", help="latent space when the file's metadata or detection can't tell")
    p.add_argument("--domain", choices=spaces.DOMAINS, help="domain of the file: raw (VAE/ComfyUI), model (sampler/"
                   "diffusers) or taesd (tiny autoencoders)")
    p.add_argument("--method", choices=(AUTO, "linear", "neural", "tiny"), default=AUTO,
                   help="auto = the shipped neural previewer when the space has one, else linear factors [%(default)s]")
    p.add_argument("--factors", help="factors file from 'latentbridge fit-preview' (implies --method linear)")
    p.add_argument("--form", choices=FORMS, help="which fitted form of --factors to use [the file's best]")
    p.add_argument("--previewer", help="neural previewer file instead of the shipped one (implies --method neural)")
    p.add_argument("--size", type=int, help="resize each preview so its longer side has this many pixels")
    p.add_argument("--animate", action="store_true", help="batch items (or several files) become frames of an "
                   "animated .webp/.gif instead of a grid")
    p.add_argument("--duration", type=int, default=150, help="milliseconds per animation frame [%(default)s]")
    add_output(p, help_text="output picture (.png, .jpg, .webp; .webp/.gif with --animate and for video latents: "
               "NAME-0.webp, NAME-1.webp, ... for a batch of clips)")
    p.set_defaults(func=cmd_preview)

    f = sub.add_parser("fit-preview", help="fit linear, affine and quadratic preview factors from images")
    f.add_argument("--encoder", help="encoder: tiny-AE name or file (taef2, taesana, path.pth), diffusers:FOLDER for "
                   "an AutoencoderKL; NAME@SPACE states the space")
    f.add_argument("--images", required=True, help="folder of images (searched recursively)")
    f.add_argument("--latents", nargs="+", help="precomputed latent files instead of an encoder; each is paired with "
                   "the image of the same name in --images")
    f.add_argument("--space", help="latent space (default: the encoder's, or the latent files')")
    f.add_argument("--eval", action="append", default=[], metavar="PATTERN", help="images whose name matches are "
                   "held out for the PSNR report (repeatable) [every 4th image]")
    f.add_argument("--size", type=int, default=512, help="encode images resized so the short side has this many "
                   "pixels, centre-cropped to a multiple of the downscale [%(default)s]")
    f.add_argument("--ridge", type=float, default=1e-5, help="ridge strength, times the mean feature energy [%(default)s]")
    f.add_argument("--patch", type=int, help="fit linear/affine factors per PxP cell of the unpacked latent [the "
                   "space's packing: 2 for FLUX.2, whose normalisation differs per cell position; else 1]")
    f.add_argument("--device", default="auto", help="auto, cpu or cuda for the encoder [%(default)s]")
    add_output(f, help_text="factors file (.safetensors) holding every fitted form")
    f.set_defaults(func=cmd_fit)


def cmd_preview(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if args.animate and out.suffix.lower() not in ANIMATIONS:
        raise InputError(f"{out}: --animate writes .webp or .gif; change the extension")
    if args.form and not args.factors:
        raise InputError(f"--form {args.form} picks a form of a factors file: give the file with --factors")
    check_output(out, args)
    method = "linear" if args.factors else "neural" if args.previewer else args.method
    factors = load_factors(args.factors, form=args.form) if args.factors else None
    frames: list[torch.Tensor] = []
    clips: list[torch.Tensor] = []  # (T, 3, h, w) each: one per batch item of a video latent
    used = set()
    for path in args.latent:
        lf, sp, domain = read_latent(path, args, finite=False)
        m = best_method(sp) if method == AUTO else method
        bad = int((~torch.isfinite(lf.tensor)).sum())
        if bad:
            sys.stderr.write(f"warning: {path} holds {bad} NaN/infinite values; those pixels are shown in magenta\n")
        rgb = preview(lf.tensor.float(), sp, method=m, domain=domain, factors=factors, previewer=args.previewer,
                      size=args.size)
        used.add(f"{sp.id} {m}")
        if rgb.ndim == 5 and rgb.shape[2] > 1:
            clips += list(rgb.transpose(1, 2))
        else:  # an image, or a one-frame video latent (a Qwen-Image picture): a still
            frames += list(rgb[:, :, 0] if rgb.ndim == 5 else rgb)
    if clips:
        if frames:
            raise InputError("the files mix video latents (B, C, T, H, W) with pictures: preview them separately")
        return _write_clips(out, clips, args, used)
    frames = _same_size(frames)
    if args.animate:
        io.save_animation(out, frames, duration_ms=args.duration, overwrite=args.overwrite)
    else:
        io.save_image(out, torch.stack(frames), overwrite=args.overwrite)
    h, w = frames[0].shape[-2:]
    kind = f"{len(frames)}-frame animation" if args.animate else "grid" if len(frames) > 1 else "picture"
    print(f"{out}: {kind} of {len(frames)} preview(s) at {w}x{h} ({', '.join(sorted(used))})")
    return 0


def _write_clips(out: Path, clips: list[torch.Tensor], args: argparse.Namespace, used: set[str]) -> int:
    """One animation per video clip: ``out`` itself for one clip, ``NAME-0``, ``NAME-1``, ... for several."""
    if out.suffix.lower() not in ANIMATIONS:
        raise InputError(f"{out}: a video latent previews as an animation, one per batch item: name the output "
                         f"{' or '.join(ANIMATIONS)}")
    paths = [out] if len(clips) == 1 else [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(len(clips))]
    for path in paths:
        check_output(path, args)
    for path, clip in zip(paths, clips, strict=True):
        io.save_animation(path, list(clip), duration_ms=args.duration, overwrite=args.overwrite)
        h, w = clip.shape[-2:]
        print(f"{path}: {len(clip)}-frame animation at {w}x{h}, one frame per latent frame ({', '.join(sorted(used))})")
    return 0


def _same_size(frames: list[torch.Tensor]) -> list[torch.Tensor]:
    """Previews of different sizes scaled to one longer side, then centred on white to one frame size."""
    if len({tuple(f.shape) for f in frames}) == 1:
        return frames
    side = max(max(f.shape[-2:]) for f in frames)
    frames = [resize(f.unsqueeze(0), side)[0] for f in frames]
    h, w = max(f.shape[-2] for f in frames), max(f.shape[-1] for f in frames)
    out = []
    for f in frames:
        top, left = (h - f.shape[-2]) // 2, (w - f.shape[-1]) // 2
        canvas = f.new_ones(3, h, w)
        canvas[:, top:top + f.shape[-2], left:left + f.shape[-1]] = f
        out.append(canvas)
    return out


def _pairs_from_files(args: argparse.Namespace, images: list[Path]) -> tuple[list[tuple[str, torch.Tensor]], str]:
    """(name, taesd-domain latent) for each --latents file, and their space."""
    by_stem = {p.stem: p for p in images}
    out, space = [], None
    for path in args.latents:
        lf, sp, domain = read_latent(path, args)
        stem = Path(path).name.split(".")[0]
        if stem not in by_stem:
            raise InputError(f"{path}: no image named {stem}.* in {args.images} to pair it with")
        if space is not None and sp.id != space:
            raise InputError(f"{path} is a {sp.id} latent but the others are {space}: fit one space at a time")
        space = sp.id
        out.append((stem, spaces.convert_domain(lf.tensor.float(), sp, domain, "taesd")))
    return out, space


def _load_fit_image(path: Path, size: int, down: int) -> torch.Tensor:
    image = io.load_image(path)
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(down, round(h * scale)), max(down, round(w * scale))
    limits.check_pixels(1, nh, nw, what=f"{path} resized", fix="use a smaller size=")
    if (nh, nw) != (h, w):
        image = torch.nn.functional.interpolate(image, size=(nh, nw), mode="bicubic", antialias=True).clamp(0, 1)
    ch, cw = nh // down * down, nw // down * down
    top, left = (nh - ch) // 2, (nw - cw) // 2
    return image[:, :, top:top + ch, left:left + cw]


def cmd_fit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if bool(args.encoder) == bool(args.latents):
        raise InputError("give either --encoder MODEL (to encode --images) or --latents FILES (precomputed)")
    if args.size < 1:
        raise InputError(f"--size {args.size} is not a positive number of pixels")
    check_options(ridge=args.ridge, patch=1 if args.patch is None else args.patch)
    images = io.list_images(args.images)
    if not images:
        raise InputError(f"{args.images}: no images found")
    check_output(args.output, args)
    root = Path(args.images)

    def held_out(i: int, p: Path) -> bool:
        rel = str(p.relative_to(root))
        if args.eval:
            return any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(p.name, pat) for pat in args.eval)
        return i % 4 == 3

    if args.latents:
        pairs, space = _pairs_from_files(args, images)
        by_stem = {p.stem: (i, p) for i, p in enumerate(images)}
        items = [(by_stem[name][1], held_out(*by_stem[name]), lat) for name, lat in pairs]
        sp = spaces.get(args.space or space)
        loaded = [(p, ev, lat, _load_fit_image(p, args.size, 1)) for p, ev, lat in items]
        loaded = [(p, ev, lat, _match(img, lat)) for p, ev, lat, img in loaded]
    else:
        from ..train import load_encoder

        enc = load_encoder(args.encoder, device=args.device)
        sp = spaces.get(args.space) if args.space else enc.space
        down = enc.space.downscale_in(enc.domain)
        loaded = []
        for i, p in enumerate(tqdm(images, desc="encoding", unit="img", disable=None)):
            img = _load_fit_image(p, args.size, down)
            lat = spaces.convert_domain(enc(img).float().cpu(), sp, enc.domain, "taesd")
            loaded.append((p, held_out(i, p), lat, img))
    train = [(lat, img) for _, ev, lat, img in loaded if not ev]
    test = [(p, lat, img) for p, ev, lat, img in loaded if ev]
    if not train or not test:
        raise InputError(f"need images both to fit and to hold out; got {len(train)} and {len(test)} "
                         "(adjust --eval or add images)")
    patch = args.patch or (sp.packing.patch if sp.packing else 1)
    fitted = fit_factors(train, ridge=args.ridge, space=sp.id, patch=patch)
    candidates: dict[str, Factors] = dict(fitted)
    if sp.rgb_factors is not None:
        candidates["built-in"] = builtin(sp)
    scores = score_factors(candidates, [(lat, img) for _, lat, img in test])
    print(f"{sp.id}: fitted on {len(train)} images, held out {len(test)}; PSNR (dB) at latent resolution vs the image "
          f"averaged over each latent cell{f'; linear and affine per {patch}x{patch} cell' if patch > 1 else ''}")
    print(f"  {'factors':<18}{'mean':>7}{'min':>7}{'max':>7}")
    for name, s in scores.items():
        label = name if name == "built-in" else f"fitted {name}"
        print(f"  {label:<18}{s.mean():7.2f}{s.min():7.2f}{s.max():7.2f}")
    default = best_form(scores, fitted)
    info = {"images_fit": len(train), "images_held_out": len(test), "ridge": args.ridge, "patch": patch,
            "held_out_psnr": {k: round(float(v.mean()), 3) for k, v in scores.items()},
            "encoder": args.encoder or "latent files", "size": args.size}
    save_factors(args.output, fitted, space=sp.id, default=default, info=info, overwrite=args.overwrite)
    print(f"{args.output}: forms {', '.join(fitted)}; default {default}")
    return 0


def _match(image: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """Crop an image to a whole multiple of its latent's grid (the targets are cell averages)."""
    h, w = image.shape[-2:]
    lh, lw = latent.shape[-2:]
    if h < lh or w < lw:
        raise InputError(f"an image of {w}x{h} is smaller than its {lw}x{lh} latent")
    return image[:, :, : h // lh * lh, : w // lw * lw]


def demo(out: Path, ctx: demo_data.DemoContext) -> list[str]:
    """Previews of the bundled example latents: photo, linear factors and the neural previewer, one row each."""
    if not ctx.latents:
        return ["no example latents are bundled: nothing to preview"]
    lines = []
    for name, lf in ctx.latents.items():
        sp = spaces.get(lf.space) if lf.space else spaces.detect(lf.tensor).require().space
        latent, domain = lf.tensor.float(), lf.domain or "model"
        rows, used = [], []
        if len(ctx.images) == len(latent):
            rows.append(ctx.images)
            used.append("photo")
        for method in ("linear", "neural"):
            try:
                rows.append(preview(latent, sp, method=method, domain=domain))
            except LatentBridgeError as e:
                lines.append(f"{name}: no {method} preview ({e})")
                continue
            used.append(method)
        tiles = [torch.nn.functional.interpolate(r, size=(128, 128), mode="nearest" if r.shape[-1] < 128 else "area")
                 for r in rows]
        path = out / f"preview-{name}.png"
        io.save_image(path, torch.cat(tiles), nrow=len(latent), overwrite=True)
        size = rows[-1].shape[-1]
        lines.append(f"{name} ({sp.id}, {tuple(lf.tensor.shape)}): rows {' / '.join(used)} at {size}x{size} "
                     f"per latent -> {path}")
    return lines
