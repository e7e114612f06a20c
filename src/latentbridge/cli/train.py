"""Training commands: ``dataset build`` and ``train``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from ..io import IMAGE_EXTENSIONS, list_images


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="latent datasets for training")
    dsub = p.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND", required=True, parser_class=type(p))
    b = dsub.add_parser("build", help="encode images through several encoders into an aligned, sharded dataset")
    b.add_argument("--images", action="append", required=True,
                   help="folder of images, or a text file with one image path per line (repeatable)")
    b.add_argument("--encoders", required=True, help="comma-separated encoders: tiny-AE names or files (taef2,taesana), "
                   "diffusers:FOLDER for an AutoencoderKL; NAME@SPACE states the space")
    b.add_argument("--size", type=_at_least(8), default=256, help="crop size in pixels [%(default)s]")
    b.add_argument("--extra-sizes", type=_sizes, default=[], help="comma-separated smaller sizes to encode each crop "
                   "at as well (e.g. 128 for 2x upscaler data)")
    b.add_argument("--crops", type=_at_least(1), default=1, help="crops per image; the first is the centre "
                   "[%(default)s]")
    b.add_argument("--no-flips", action="store_true", help="no random horizontal flips")
    b.add_argument("--eval", action="append", default=[], metavar="PATTERN",
                   help="images whose name matches go to the held-out split (repeatable)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--shard-size", type=_at_least(1), default=256, help="crops per shard file [%(default)s]")
    b.add_argument("--batch-size", type=_at_least(1), default=16, help="encoder batch size [%(default)s]")
    b.add_argument("--device", default="auto", help="auto, cpu or cuda [%(default)s]")
    b.add_argument("-o", "--output", required=True, help="dataset folder (a rerun resumes it)")
    b.set_defaults(func=cmd_dataset_build)

    p = sub.add_parser("train", help="train a recipe (previewer, upscaler, interposer, factors) on a dataset")
    p.add_argument("config", help="TOML config (see configs/)")
    p.add_argument("--data", required=True, help="dataset folder from 'latentbridge dataset build'")
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics.csv, samples/, export/")
    p.add_argument("--steps", type=_at_least(0), help="override train.steps")
    p.add_argument("--checkpoint-every", type=_at_least(0), help="override train.checkpoint_every")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.set_defaults(func=cmd_train)


def _at_least(least: int):
    """An argparse type: a whole number of at least ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} is below {least}")
        return value

    return parse


def _sizes(text: str) -> list[int]:
    """An argparse type: comma-separated sizes of at least 8 pixels."""
    return [_at_least(8)(part.strip()) for part in text.split(",") if part.strip()]


def _images(sources: list[str]) -> tuple[list[Path], Path | None]:
    paths: list[Path] = []
    roots = []
    for s in sources:
        src = Path(s)
        if src.is_dir():
            paths += list_images(src)
            roots.append(src)
        elif src.is_file() and src.suffix.lower() not in IMAGE_EXTENSIONS:
            try:
                lines = src.read_bytes().decode("utf-8").splitlines()
            except UnicodeDecodeError:
                raise InputError(f"{src}: neither an image ({', '.join(IMAGE_EXTENSIONS)}) nor a text file listing "
                                 "image paths") from None
            paths += [Path(line.strip()) for line in lines if line.strip()]
        elif src.is_file():
            paths.append(src)
        else:
            raise InputError(f"{src}: no such folder or file of images")
    return paths, roots[0] if len(roots) == 1 else None


def cmd_dataset_build(args: argparse.Namespace) -> int:
    from ..train import build_dataset, load_encoder

    encoders = [load_encoder(spec.strip(), device=args.device) for spec in args.encoders.split(",") if spec.strip()]
    paths, root = _images(args.images)
    manifest = build_dataset(paths, encoders, Path(args.output), size=args.size, extra_sizes=args.extra_sizes,
                             crops=args.crops, flips=not args.no_flips, seed=args.seed, shard_size=args.shard_size,
                             eval_patterns=args.eval, batch_size=args.batch_size, root=root)
    for path in manifest["skipped"]["unreadable"]:
        sys.stderr.write(f"warning: {path}: skipped, not a readable image (damaged, truncated or not a picture)\n")
    for path in manifest["skipped"]["too large"]:
        sys.stderr.write(f"warning: {path}: skipped, too large to decode safely (above PIL's decompression-bomb "
                         "limit or $LATENTBRIDGE_MAX_PIXELS)\n")
    images = manifest["images"]
    skipped = ", ".join(f"{len(v)} {k}" for k, v in manifest["skipped"].items() if v) or "none"
    encoders = ", ".join(f"{n} ({e['space']}, {e['domain']})" for n, e in manifest["encoders"].items())
    held_out = sum(i["split"] == "eval" for i in images)
    print(f"{args.output}: {len(manifest['items'])} crops of {len(images)} images ({held_out} held out), "
          f"encoders {encoders}, sizes {manifest['sizes']}; skipped: {skipped}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..train import Trainer, load_config

    overrides = {k: v for k, v in {"steps": args.steps, "checkpoint_every": args.checkpoint_every}.items()
                 if v is not None}
    config = load_config(args.config, overrides=overrides)
    trainer = Trainer(config, args.data, args.out)
    metrics = trainer.run(resume=args.resume)
    if trainer.main:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        print(f"{args.out}: done; held-out {shown}; model in {Path(args.out) / 'export'}")
    return 0
