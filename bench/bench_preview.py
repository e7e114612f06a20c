"""Previewers on the held-out photos, side by side: quality at latent resolution and time per latent.

For each held-out photo (the pool's eval split, or the 12 shared photos where the pool is absent or ``--held-out
shared`` asks for them; centre-cropped to 512x512): the real tiny encoder (TAEF2 for flux2, TAESana for sana) gives
the latent; each previewer maps it to RGB at latent resolution (/8 for FLUX.2, /32 for Sana) and is scored by PSNR
against the photo averaged over each latent cell. The full TAEF2 decode (then averaged the same way) is the quality
ceiling. Times are median CPU times of one thread (time.thread_time, so other jobs on the machine do not inflate
them) for one 64x64 and one 128x128 latent (taesd-domain side: FLUX.2 unpacked /8, so 512 and 1024 px images;
handed over packed in the model domain, as samplers do), next to a memory copy of the same latent and a full TAEF2
decode.

FLUX.2's /4 rung (previewer-flux2-x2: two picture pixels per /8 latent pixel along each side, so a 256-pixel preview of a 1024-pixel
image) is scored against the photo averaged over 4x4 cells, beside the /8 rung's picture enlarged 2x (bilinear: what
a host shows today) and the full TAEF2 decode averaged the same way.

Targets (issue 20): neural flux2 /8 >= 34 dB at <= 1/300 of a full TAEF2 decode; /4 >= 30 dB at <= 1/50; neural
sana >= 33 dB; linear within 10x of a memory copy.

    .venv/bin/python bench/bench_preview.py [--quick] [--held-out pool|shared] [--pool DIR] [--limit N] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    SHARED_WEIGHTS,
    add_held_out_options,
    held_out_from,
    markdown_table,
    pictured,
    reproduce,
    require,
    write_result,
)

from latentbridge.metrics import psnr

SHEET = 5  # photos on each contact sheet
SIDES = (64, 128)
BATCH = 4  # photos per call when scoring (a full TAEF2 decode of the whole set at once would not fit in memory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timing repeats, no 128x128 TAEF2 decode")
    add_held_out_options(parser)
    args = parser.parse_args()
    require(SHARED_WEIGHTS / "taef2_decoder.pth", "the real TAEF2 and TAESana weights")
    os.environ.setdefault("LATENTBRIDGE_MODELS", str(SHARED_WEIGHTS))
    from latentbridge import io, spaces, tiny
    from latentbridge.preview import builtin, default_factors, neural, preview

    torch.set_grad_enabled(False)
    held = held_out_from(args)
    args.out.mkdir(parents=True, exist_ok=True)
    images = torch.cat([p.load(512) for p in held.pictures])
    sheet_pictures, credit_line = pictured(held, SHEET)
    repeat = 20 if args.quick else 100
    decoder = tiny.load("taef2_decoder")
    report = [f"# Previewers on {len(held.pictures)} held-out photos (512x512), CPU times of one thread", "",
              held.describe(), "", __doc__.split("\n\n")[1].replace("\n", " "), ""]
    summary = []
    to_taesd = lambda x: spaces.convert_domain(x, "flux2", "model", "taesd")  # noqa: E731
    decode_times = [_time(lambda x: decoder.decode(to_taesd(x)), spaces.get("flux2"), side, repeat,
                          skip=args.quick and side > 64) for side in SIDES]
    for space, encoder in (("flux2", "taef2_encoder"), ("sana", "taesana_encoder")):
        sp = spaces.get(space)
        enc = tiny.load(encoder)
        model = _batched(lambda x, sp=sp, enc=enc: spaces.convert_domain(enc.encode(x), sp, "taesd", "model"), images)
        target = F.avg_pool2d(images, sp.taesd_downscale)
        sheet_images = torch.cat([p.load(512) for p in sheet_pictures]) if sheet_pictures else images[:0]
        sheet_model = spaces.convert_domain(enc.encode(sheet_images), sp, "taesd", "model") if sheet_pictures else None
        methods = {}
        if sp.rgb_factors is not None:
            methods["linear, registry factors"] = lambda x, sp=sp: preview(x, sp, factors=builtin(sp))
        if default_factors(sp).source != builtin_source(sp):
            methods["linear, shipped fitted factors (default)"] = lambda x, sp=sp: preview(x, sp)
        methods["neural (shipped)"] = lambda x, sp=sp: preview(x, sp, method="neural", previewer=neural.find(sp))
        if space == "flux2":
            methods["full TAEF2 decode, averaged"] = lambda x: F.avg_pool2d(decoder.decode(to_taesd(x)).clamp(0, 1), 8)
        copy = [_time(lambda x: x.clone(), sp, side, repeat) for side in SIDES]
        rows, sheets = [], {"photo (averaged target)": F.avg_pool2d(sheet_images, sp.taesd_downscale)}
        for name, fn in methods.items():
            score = psnr(_batched(fn, model), target)
            if sheet_model is not None:
                sheets[name] = fn(sheet_model)
            times = (decode_times if "TAEF2" in name else
                     [_time(fn, sp, side, repeat) for side in SIDES])
            rows.append([name, f"{score.mean():.2f}", f"{score.min():.2f}",
                         *(f"{_ms(t)}" for t in times),
                         *(f"{t / c:.1f}x" if t == t else "-" for t, c in zip(times, copy, strict=True)),
                         *(f"1/{d / t:.0f}" if t == t and d == d else "-" for t, d in zip(times, decode_times, strict=True))])
            summary.append((space, name, float(score.mean()), times, copy))
        report += [f"## {space} ({sp.taesd_channels} channels at /{sp.taesd_downscale} in the taesd domain)", "",
                   markdown_table(["method", "PSNR mean (dB)", "PSNR min", "CPU ms 64x64", "CPU ms 128x128",
                                   "x copy 64", "x copy 128", "of TAEF2 decode 64", "of TAEF2 decode 128"], rows), "",
                   f"Memory copy of the same (model-domain) latent: {_ms(copy[0])} ms (64x64), {_ms(copy[1])} ms "
                   f"(128x128); full TAEF2 decode: {_ms(decode_times[0])} ms (64x64), {_ms(decode_times[1])} ms "
                   "(128x128).", ""]
        for name, picture in sheets.items() if sheet_pictures else ():
            slug = "linear-fitted" if "shipped fitted" in name else name.split(",")[0].split(" (")[0].replace(" ", "-")
            tiles = F.interpolate(picture.float().clamp(0, 1), size=(128, 128), mode="nearest")
            path = args.out / f"preview-{space}-{slug}.png"
            io.save_image(path, tiles, nrow=len(sheet_pictures), overwrite=True)
            report.append(f"- {name}: ![{space} {name}]({path.name})")
        report.append("")
        if space == "flux2":
            report += _quarter_rung(sp, model, images, decoder, to_taesd, decode_times, repeat, summary,
                                    sheet_model, sheet_images, args.out)
    report += ["## Targets", ""]
    report += _targets(summary, decode_times)
    report += ["", f"Contact sheets: {credit_line} PSNR is over the {len(held.pictures)} held-out photos.", "",
               reproduce(__file__, sys.argv[1:], held)]
    write_result("preview", "\n".join(report), out=args.out)


def _quarter_rung(sp, model, images, decoder, to_taesd, decode_times, repeat, summary, sheet_model, sheet_images,
                  out: Path) -> list[str]:
    """The FLUX.2 /4 rung against the photo averaged over 4x4 cells, beside the /8 rung enlarged and the decode."""
    from latentbridge import io
    from latentbridge.errors import WeightsNotFoundError
    from latentbridge.preview import neural, preview

    try:
        quarter = neural.find(sp, scale=2)
    except WeightsNotFoundError as exc:
        return ["## flux2 /4 rung", "", f"Not measured: {exc}", ""]
    eighth = neural.find(sp)
    methods = {
        "neural /4 rung (shipped)": lambda x: preview(x, sp, method="neural", previewer=quarter),
        "neural /8 rung, enlarged 2x (bilinear)": lambda x: F.interpolate(
            preview(x, sp, method="neural", previewer=eighth), scale_factor=2, mode="bilinear", align_corners=False),
        "full TAEF2 decode, averaged over 4x4": lambda x: F.avg_pool2d(decoder.decode(to_taesd(x)).clamp(0, 1), 4),
    }
    target = F.avg_pool2d(images, 4)
    rows, sheets = [], {"photo (averaged over 4x4)": F.avg_pool2d(sheet_images, 4)}
    for name, fn in methods.items():
        score = psnr(_batched(fn, model), target)
        if sheet_model is not None:
            sheets[name] = fn(sheet_model)
        times = decode_times if "TAEF2" in name else [_time(fn, sp, side, repeat) for side in SIDES]
        rows.append([name, f"{score.mean():.2f}", f"{score.min():.2f}", *(_ms(t) for t in times),
                     *(f"1/{d / t:.0f}" if t == t and d == d else "-" for t, d in zip(times, decode_times, strict=True))])
        summary.append(("flux2", name, float(score.mean()), times, times))
    lines = ["## flux2 /4 rung (pictures at /4 of the image: 128x128 for these 512x512 photos)", "",
             markdown_table(["method", "PSNR mean (dB)", "PSNR min", "CPU ms 64x64", "CPU ms 128x128",
                             "of TAEF2 decode 64", "of TAEF2 decode 128"], rows), ""]
    for name, picture in sheets.items() if sheet_model is not None else ():
        slug = name.split(" (")[0].split(",")[0].replace(" ", "-").replace("/", "")
        path = out / f"preview-flux2-quarter-{slug}.png"
        io.save_image(path, F.interpolate(picture.float().clamp(0, 1), size=(128, 128), mode="nearest"),
                      nrow=len(sheet_images), overwrite=True)
        lines.append(f"- {name}: ![flux2 {name}]({path.name})")
    return [*lines, ""]


def _batched(fn, x: torch.Tensor) -> torch.Tensor:
    """``fn`` applied to ``x`` in batches of BATCH, concatenated: the same result in bounded memory."""
    return torch.cat([fn(x[i:i + BATCH]) for i in range(0, len(x), BATCH)])


def builtin_source(sp) -> str:
    from latentbridge.preview import builtin

    try:
        return builtin(sp).source
    except Exception:  # noqa: BLE001 - a space without registry factors
        return ""


def _time(fn, sp, side: int, repeat: int, *, skip: bool = False) -> float:
    """Median single-thread CPU seconds of ``fn`` on a random model-domain latent of ``side`` taesd pixels."""
    if skip:
        return float("nan")
    x = torch.randn(sp.latent_shape(side * sp.taesd_downscale, side * sp.taesd_downscale, domain="model"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.thread_time()
        fn(x)  # warm-up (oneDNN picks its kernels on the first call)
        slow = time.thread_time() - start > 0.5
        times = []
        for _ in range(3 if slow else repeat):
            start = time.thread_time()
            fn(x)
            times.append(time.thread_time() - start)
        return statistics.median(times)
    finally:
        torch.set_num_threads(threads)


def _ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.3f}" if seconds < 0.01 else f"{seconds * 1000:.1f}"


def _targets(summary, decode_times) -> list[str]:
    get = {(s, n): (p, t, c) for s, n, p, t, c in summary}
    lines = []
    for space, name, goal, cost in (("flux2", "neural (shipped)", 34.0, 300), ("sana", "neural (shipped)", 33.0, None),
                                    ("flux2", "neural /4 rung (shipped)", 30.0, 50)):
        found = get.get((space, name))
        if found is None:
            continue
        score, times, _ = found
        text = f"- {space} {name}: {score:.2f} dB (target >= {goal:g}): {'met' if score >= goal else 'NOT met'}"
        if cost is not None:
            ratio = decode_times[0] / times[0]
            text += (f"; CPU time 1/{ratio:.0f} of a full TAEF2 decode at 64x64 (target <= 1/{cost}): "
                     f"{'met' if ratio >= cost else 'NOT met'}")
        lines.append(text)
    for (space, name), (_, times, copy) in get.items():
        if name.startswith("linear") and ("default" in name or not any(
                s == space and "default" in n for s, n in get)):
            worst = max(t / c for t, c in zip(times, copy, strict=True))
            lines.append(f"- linear {space} ({name}): at most {worst:.1f}x a memory copy of the same latent "
                         f"(target <= 10x): {'met' if worst <= 10 else 'NOT met'}")
    return lines


if __name__ == "__main__":
    main()
