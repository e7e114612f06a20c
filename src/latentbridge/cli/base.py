"""Foundation commands: spaces, info, doctor, demo."""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from importlib import metadata as pkg_metadata
from pathlib import Path

import torch

from .. import __version__, demo_data, hub, io, spaces, weights
from ..errors import InputError
from .common import add_latent_input, print_json, read_latent


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spaces", help="list the latent spaces latentbridge knows")
    p.add_argument("--json", action="store_true", help="print the whole registry as JSON")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("info", help="shape, statistics, metadata and detected space of a latent file")
    add_latent_input(p)
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("doctor", help="torch, devices, and where weights are looked for")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("demo", help="run the toolkit on bundled example data, offline")
    p.add_argument("-o", "--output", default="latentbridge-demo", help="folder for the results [%(default)s]")
    p.set_defaults(func=cmd_demo)


def cmd_spaces(args: argparse.Namespace) -> int:
    if args.json:
        print_json([{**dataclasses.asdict(s), "previewers": [dataclasses.asdict(r) for r in s.preview_rungs]}
                    for s in spaces.all()])
        return 0
    print(f"{'id':<16}{'ch':>4}{'/':>4}{'/t':>4}  {'raw -> model':<44}{'tiny':<10}{'interp':<7}aliases")
    for s in spaces.all():
        if s.latents_std is not None:
            norm = f"(r - mean_c) * {s.scaling_factor:g} / std_c"
        elif s.packing:
            norm = f"identity; taesd = unpacked {s.taesd_channels} ch /{s.taesd_downscale}"
        elif s.shift_factor:
            norm = f"(r - {s.shift_factor:g}) * {s.scaling_factor:g}"
        else:
            norm = f"r * {s.scaling_factor:.6g}"
        tiny = s.tiny_models[0].name if s.tiny_models else "-"
        print(f"{s.id:<16}{s.channels:>4}{s.downscale:>4}{s.temporal_downscale:>4}  {norm:<44}{tiny:<10}"
              f"{s.interposer_code or '-':<7}{', '.join(s.aliases[:4])}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    path = Path(args.latent)
    if path.suffix.lower() in (".safetensors", ".latent") and path.is_file() and path.stat().st_size > io.MAX_FILE_BYTES:
        return _header_info(path, args.json)
    lf, _, _ = read_latent(args.latent, args, need_space=False, finite=False)
    info = io.latent_summary(lf)
    found = spaces.detect(lf.tensor, {k: v for k, v in {"space": lf.space, "domain": lf.domain}.items() if v})
    info["detected"] = {"ambiguous": found.ambiguous, "summary": found.summary,
                        "candidates": [{"space": c.space.id, "domain": c.domain, "confidence": c.confidence,
                                        "reason": c.reason} for c in found.candidates[:6]]}
    if args.json:
        print_json(info)
    else:
        print(f"{info['file']}  ({info['format']})")
        print(f"  shape {tuple(info['shape'])}  dtype {info['dtype']}")
        if info["stats"]:
            s = info["stats"]
            print(f"  min {s['min']:.4g}  max {s['max']:.4g}  mean {s['mean']:.4g}  std {s['std']:.4g}")
        if info["nonfinite"]:
            print(f"  WARNING: {info['nonfinite']} NaN/Inf values")
        print(f"  stated: space {lf.space or '?'}, domain {lf.domain or '?'}")
        for k, v in lf.metadata.items():
            print(f"  meta {k} = {v[:100]}")
        print(f"  detected: {found.summary}")
        for c in found.candidates[:6]:
            print(f"    {c.confidence:6.1%}  {c.space.id:<15} {c.domain:<6} {c.reason}")
    if info["nonfinite"]:
        raise InputError(f"{args.latent}: the latent holds {info['nonfinite']} NaN or infinite values")
    return 0


def _header_info(path: Path, as_json: bool) -> int:
    """A file too big to be a latent (a checkpoint, say): what its header says, without reading its data."""
    header = weights.safetensors_header(path)
    info = {"file": str(path), "format": "safetensors (header only)", "bytes": path.stat().st_size,
            "tensors": {k: {"dtype": d, "shape": list(s)} for k, (d, s) in header.tensors.items()},
            "metadata": header.metadata}
    if as_json:
        print_json(info)
        return 0
    print(f"{path}  ({path.stat().st_size / 1e9:.1f} GB: too big for a latent file, so only its header was read)")
    print(f"  {len(header.tensors)} tensors, {header.data_bytes / 1e9:.1f} GB of data")
    for name, (dtype, shape) in list(header.tensors.items())[:8]:
        print(f"    {name}: {dtype} {shape}")
    for k, v in header.metadata.items():
        print(f"  meta {k} = {v[:100]}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    print(f"latentbridge {__version__}, Python {platform.python_version()} on {platform.machine()}")
    print(f"torch {torch.__version__}; threads {torch.get_num_threads()}; CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    print(f"  cuda: {torch.cuda.is_available()}" + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
    print(f"  mps: {getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available()}")
    for dist in ("diffusers", "transformers", "accelerate", "huggingface_hub", "safetensors"):
        try:
            print(f"  {dist} {pkg_metadata.version(dist)}")
        except pkg_metadata.PackageNotFoundError:
            print(f"  {dist}: not installed")
    print(f"offline mode: {weights.offline()}; hub {hub.endpoint()} ({hub.attempts()} attempts of {hub.timeout():g} s)")
    print(f"hub cache searched: {hub.cache_dir()}{'' if hub.cache_dir().is_dir() else '  (missing)'}")
    print("weight folders searched (first match wins):")
    for d in weights.search_dirs():
        files = sorted(p.name for p in d.glob("*") if p.suffix in weights.WEIGHT_SUFFIXES) if d.is_dir() else []
        print(f"  {d}{'' if d.is_dir() else '  (missing)'}")
        for name in files:
            print(f"      {name}")
    return 0


def demo(out: Path, ctx: demo_data.DemoContext) -> list[str]:
    """Example photos as a contact sheet, and the detection of each bundled latent."""
    lines = [f"example photos: {out / 'examples.png'}"]
    io.save_image(out / "examples.png", ctx.images, overwrite=True)
    for name, lf in ctx.latents.items():
        found = spaces.detect(lf.tensor)
        lines.append(f"{name}: stated {lf.space}/{lf.domain}; detected without metadata: {found.summary}")
    return lines


DEMO_MARK = ".latentbridge-demo"  # in a folder the demo wrote: a rerun may replace its pictures


def _demo_folder(name: str) -> Path:
    """The demo's output folder, made if new; an existing one must be empty or an earlier demo's, since the demo
    replaces the files it writes (a user's own 'preview.png' must not be among them)."""
    out = Path(name)
    if not name.strip():
        raise InputError("-o '' names no folder: give the folder for the demo's pictures")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a folder: give a new folder for the demo's pictures")
    if out.is_dir() and any(out.iterdir()) and not (out / DEMO_MARK).is_file():
        raise InputError(f"{out} is not empty and was not written by the demo: give a new or empty folder, so that "
                         "none of its files is replaced")
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARK).touch()
    return out


def cmd_demo(args: argparse.Namespace) -> int:
    from . import command_modules

    out = _demo_folder(args.output)
    ctx = demo_data.load()
    print(f"latentbridge demo: {len(ctx.images)} example photos, {len(ctx.latents)} example latents -> {out}/")
    for module in command_modules():
        section = getattr(module, "demo", None)
        if section is None:
            continue
        start = time.perf_counter()
        lines = section(out, ctx)
        print(f"[{module.__name__.rsplit('.', 1)[-1]}] ({time.perf_counter() - start:.1f}s)")
        for line in lines:
            print(f"  {line}")
    print(f"done: open {out}/ (pictures first, then the numbers above)")
    return 0
