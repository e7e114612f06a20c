"""Shared helpers for the benchmarks: timing, peak memory, photo loading, Markdown tables.

Benchmarks measure side by side in one run and print ratios; they are never part of the test suite.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LATENTBRIDGE_SHARED", ROOT.parent / "shared"))
SHARED_WEIGHTS = SHARED / "weights" / "taesd"
SHARED_PHOTOS = SHARED / "data" / "photos"
RESULTS = ROOT / "bench" / "results"


def shown(path: str | os.PathLike) -> str:
    """``path`` relative to the repository when inside it: results should not name the machine they ran on."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(path)


def timeit(fn: Callable[[], object], *, warmup: int = 1, repeat: int = 5, min_time: float = 0.0) -> float:
    """Median wall time of ``fn()`` in seconds (synchronising CUDA), after ``warmup`` calls."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    start_all = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start_all < min_time:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_rss_mib(fn: Callable[[], object]) -> float:
    """Peak resident memory growth of the process while ``fn()`` runs, in MiB (Linux: resets VmHWM first)."""
    gc.collect()
    base = _rss("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return float("nan")
    fn()
    return (_rss("VmHWM") - base) / 1024


def _rss(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def require(path: Path, what: str) -> Path:
    """Exit with a clear reason when a file of ../shared the benchmark needs is absent."""
    if not path.exists():
        raise SystemExit(f"skipped: {path} is absent ({what}); benchmarks need ../shared")
    return path


def photos(*, held_out: bool | None = None) -> list[Path]:
    """The real photos; ``held_out`` selects the evaluation split used by every benchmark (the last 12)."""
    require(SHARED_PHOTOS, "the real photos")
    paths = sorted(SHARED_PHOTOS.glob("photo_*.jpg")) + sorted((SHARED_PHOTOS / "nonsquare").glob("photo_*.jpg"))
    split = sorted(SHARED_PHOTOS.glob("photo_*.jpg"))[-12:]
    if held_out is None:
        return paths
    return [p for p in paths if (p in split) == held_out]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, text: str) -> Path:
    """Write a benchmark's Markdown report to bench/results/NAME.md and print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(text + "\n")
    print(text)
    return path


