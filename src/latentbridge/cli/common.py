"""Options and helpers shared by the commands: reading latents with --space/--domain, writing outputs."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from .. import io, limits, spaces
from ..errors import InputError


def add_latent_input(parser: argparse.ArgumentParser, *, nargs: str | None = None) -> None:
    """Positional LATENT plus --space/--domain to state what the file holds."""
    parser.add_argument("latent", nargs=nargs, help="latent file (.safetensors, .latent, .npy, .pt)")
    parser.add_argument("--space", help="latent space of the file when its metadata or detection can't tell "
                        "(see 'latentbridge spaces')")
    parser.add_argument("--domain", choices=spaces.DOMAINS, help="domain of the file: raw (VAE/ComfyUI), model "
                        "(sampler/diffusers) or taesd (tiny autoencoders)")


def add_output(parser: argparse.ArgumentParser, *, required: bool = True, help_text: str = "output file") -> None:
    parser.add_argument("-o", "--output", required=required, help=help_text)
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it exists")


def check_output(path: str | os.PathLike, args: argparse.Namespace) -> Path:
    """:func:`io.check_writable` for a file the command writes, refusing one that is also among its inputs: even
    with --overwrite the input would be lost (its result may be wrong or the run cut short)."""
    target = io.check_writable(path, overwrite=getattr(args, "overwrite", False))
    for name, value in vars(args).items():
        given = value if isinstance(value, (list, tuple)) else [value]
        for item in given:
            if name != "output" and isinstance(item, str) and item and _same_file(item, target):
                raise InputError(f"{target} is also an input of this command ({item}); writing it would destroy "
                                 "the input: choose another output name")
    return target


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # either is missing (a new output), or not a usable path
        return False


def load_nonempty(path: str, *, space: str | None, domain: str | None) -> io.LatentFile:
    """:func:`io.load_latent`, refusing an empty tensor (a 0x0 latent, an empty batch) with the file's name."""
    lf = io.load_latent(path, space=space, domain=domain)
    try:
        limits.check_not_empty(lf.tensor)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    return lf


def read_latent(path: str, args: argparse.Namespace, *, need_space: bool = True,
                finite: bool = True) -> tuple[io.LatentFile, spaces.LatentSpace | None, str]:
    """Load a latent and settle its space and domain from --space/--domain, metadata, then detection."""
    lf = load_nonempty(path, space=getattr(args, "space", None), domain=getattr(args, "domain", None))
    if finite and (bad := spaces.count_nonfinite(lf.tensor)):
        raise InputError(f"{path}: the latent holds {bad} NaN or infinite values; it is corrupt or came from a "
                         "diverged sampler")
    if lf.space and lf.domain:
        sp = spaces.get(lf.space)
        spaces.validate(lf.tensor, sp, lf.domain, finite=False)
        return lf, sp, lf.domain
    hints = {"space": lf.space, "domain": lf.domain}
    found = spaces.detect(lf.tensor, {k: v for k, v in hints.items() if v})
    if not need_space:
        best = found.best if not found.ambiguous else None
        return lf, best.space if best else None, best.domain if best else (lf.domain or "raw")
    try:
        cand = found.require()
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    return lf, cand.space, cand.domain


def write_latent(args: argparse.Namespace, tensor: torch.Tensor, space: spaces.LatentSpace, domain: str,
                 *, extras: dict | None = None, metadata: dict | None = None) -> Path:
    """Write a command's latent result to -o (format by extension) with our metadata."""
    return io.save_latent(args.output, tensor, space=space.id, domain=domain, extras=extras, metadata=metadata,
                          overwrite=args.overwrite)


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str))
