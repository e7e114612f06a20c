"""Iterative mixing: what mixing adds to a sampling step, and the unsampler's memory against a materialised batch.

1. Step time: Euler with a small random SD-style UNet (the denoiser) with and without mixing (every step blends),
   measured interleaved, plus the mixing work alone (noised copy + blend) timed in isolation. Target: <= 3%.
2. Memory: peak RSS growth while a sampler walks 20, 50 and 200 noised copies from the lazy unsampler, against
   materialising the batch first as the Iterative Mixer's Batch Unsampler did. Target: flat in the steps.

    .venv/bin/python bench/bench_mixing.py [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, peak_rss_mib, timeit, write_result

from latentbridge import io, mixing


def unet_denoiser(size: int) -> tuple[mixing.Denoiser, torch.Tensor]:
    """A random SD1-layout UNet (narrower) as an eps denoiser, and a model-domain reference latent."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(64, 128, 128), layers_per_block=1, cross_attention_dim=64,
                                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                                attention_head_dim=8, norm_num_groups=32).eval()
    context = torch.randn(1, 8, 64)

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x, t, encoder_hidden_states=context.expand(x.shape[0], -1, -1)).sample

    reference = torch.randn(1, 4, size, size)
    return mixing.Denoiser(net, "eps", timestep=lambda s: s.log() * 100), reference


def sigmas(steps: int) -> torch.Tensor:
    return torch.cat([torch.exp(torch.linspace(2.7, -3.5, steps)), torch.zeros(1)])


def step_overhead(size: int, steps: int, repeats: int) -> tuple[list, dict]:
    denoise, ref = unet_denoiser(size)
    sig = sigmas(steps)
    un = mixing.Unsampler(ref, sig[:-1], seed=0)
    weights = mixing.schedule("cosine", steps, stop=2.0)  # > 0 at every step: every step blends
    start = un[0]

    def plain() -> torch.Tensor:
        return mixing.sample_euler(denoise, start, sig, disable=True)

    def mixed(blend: str = "lerp") -> torch.Tensor:
        return mixing.sample_mixing(denoise, start, sig, noised=un, weights=weights, blend=blend, disable=True)

    with torch.no_grad():
        plain(), mixed()  # warm up
        times: dict[str, list[float]] = {"plain": [], "mixing": []}
        for _ in range(repeats):  # interleaved so load changes hit both alike
            for name, fn in (("plain", plain), ("mixing", mixed)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        step = statistics.median(times["plain"]) / steps
        mixed_step = statistics.median(times["mixing"]) / steps
        rows = [["Euler, no mixing", step * 1e3, "-", "-"],
                ["Euler + mixing (lerp), end to end", mixed_step * 1e3, f"{(mixed_step / step - 1) * 100:+.2f}%", "noisy"]]
        isolated = {}
        x = start.clone()
        for blend in mixing.BLENDS:
            for shared in (True, False):
                u = mixing.Unsampler(ref, sig[:-1], seed=0, shared_noise=shared)
                cost = timeit(lambda u=u, blend=blend: mixing.blend(x, u[steps // 2], 0.5, blend), repeat=50)
                label = f"mixing work alone: {blend}, {'shared' if shared else 'per-step'} noise"
                isolated[label] = cost / step
                rows.append([label, cost * 1e3, f"{cost / step * 100:.3f}%", "isolated"])
    return rows, {"step_ms": step * 1e3, "end_to_end": mixed_step / step - 1, "isolated_max": max(isolated.values())}


def walk(ref: torch.Tensor, steps: int, *, materialise: bool) -> None:
    """Blend every noised copy once, as the mixing sampler does, from the lazy unsampler or a materialised batch."""
    copies = mixing.Unsampler(ref, sigmas(steps)[:-1], seed=0)
    if materialise:
        copies = mixing.NoisedBatch(copies.materialise(), steps)
    x = copies[0]
    for k in range(steps):
        x = mixing.blend(x, copies[k], 0.5)


def _peak(shape: tuple[int, ...], steps: int, materialise: bool) -> float:
    ref = torch.randn(shape)
    walk(ref, 2, materialise=materialise)  # warm up torch's kernels outside the measurement
    return peak_rss_mib(partial(walk, ref, steps, materialise=materialise))


def memory(shape: tuple[int, ...], step_counts: list[int]) -> list[list]:
    """Peak RSS growth of each walk, each in a fresh process so freed memory of another run cannot hide growth."""
    rows = []
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        for steps in step_counts:
            lazy = pool.apply(_peak, (shape, steps, False))
            full = pool.apply(_peak, (shape, steps, True))
            rows.append([steps, lazy, full, full / max(lazy, 1e-3)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller latent and fewer repeats (a smoke run)")
    args = parser.parse_args()
    size, steps, repeats = (32, 4, 2) if args.quick else (64, 10, 7)
    torch.set_num_threads(1)  # 2 shared cores: one thread gives steadier timings than two that wait on each other
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load:.1f}", flush=True)

    timing, summary = step_overhead(size, steps, repeats)
    mem_rows = memory((1, 16, 128, 128), [20, 50, 200])
    lazy_growth = mem_rows[-1][1] - mem_rows[0][1]
    latent_mib = 16 * 128 * 128 * 4 / 2**20

    plot = io.line_plot({"lazy unsampler": ([r[0] for r in mem_rows], [r[1] for r in mem_rows]),
                         "materialised batch": ([r[0] for r in mem_rows], [r[2] for r in mem_rows])},
                        title=f"peak memory growth walking the noised copies (1 x 16 x 128 x 128 latent = {latent_mib:.0f} MiB)",
                        xlabel="steps", ylabel="MiB")
    RESULTS.mkdir(parents=True, exist_ok=True)
    io.save_pil(RESULTS / "mixing_memory.png", plot, overwrite=True)

    met_time = summary["isolated_max"] <= 0.03 and summary["end_to_end"] <= 0.03
    met_mem = lazy_growth <= 2 * latent_mib
    text = "\n".join([
        "# Iterative mixing benchmark",
        "",
        f"`bench/bench_mixing.py{' --quick' if args.quick else ''}`; torch {torch.__version__} on CPU, "
        f"{torch.get_num_threads()} thread(s), load average {load:.1f} at the start (the machine is shared: end-to-end "
        "times are noisy, the isolated costs are the precise figure).",
        "",
        f"## Step time (random SD-layout UNet, latent 1 x 4 x {size} x {size}, {steps} Euler steps, {repeats} "
        "interleaved repeats)",
        "",
        markdown_table(["what", "ms per step", "vs a plain step", "how"], timing),
        "",
        f"Target: mixing adds at most 3% to a step: **{'met' if met_time else 'NOT met'}** (end to end "
        f"{summary['end_to_end'] * 100:+.2f}%, largest isolated cost {summary['isolated_max'] * 100:.3f}%).",
        "",
        "## Unsampler memory (peak RSS growth while walking every copy once with a blend)",
        "",
        markdown_table(["steps", "lazy MiB", "materialised MiB", "ratio"], mem_rows),
        "",
        f"Target: the lazy unsampler's peak does not grow with the steps: **{'met' if met_mem else 'NOT met'}** "
        f"(20 -> 200 steps: {lazy_growth:+.1f} MiB; one latent is {latent_mib:.0f} MiB). Picture: "
        "`bench/results/mixing_memory.png`.",
    ])
    write_result("mixing", text)


if __name__ == "__main__":
    main()
