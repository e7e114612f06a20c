"""Shared helpers for the benchmarks: timing, peak memory, photo loading, the held-out set, Markdown tables.

Benchmarks measure side by side in one run and print ratios; they are never part of the test suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import importlib.util
import json
import os
import re
import shlex
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LATENTBRIDGE_SHARED", ROOT.parent / "shared"))
SHARED_WEIGHTS = SHARED / "weights" / "taesd"
SHARED_PHOTOS = SHARED / "data" / "photos"
RESULTS = ROOT / "bench" / "results"
POOL_SCRIPT = ROOT / "scripts" / "fetch_pool.py"


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


@functools.cache
def _fetch_pool():
    """scripts/fetch_pool.py as a module: the pool's default folder and its reserved evaluation packages live there.

    The script raises Pillow's decompression-bomb limit for its own large wallpapers; the limit is put back, so
    that importing it leaves this process's image checks as they were."""
    if "fetch_pool" in sys.modules:
        return sys.modules["fetch_pool"]
    spec = importlib.util.spec_from_file_location("fetch_pool", POOL_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fetch_pool"] = module  # its dataclasses look their module up while the file runs
    limit = Image.MAX_IMAGE_PIXELS
    try:
        spec.loader.exec_module(module)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return module


def default_pool() -> Path:
    """The folder scripts/fetch_pool.py fills unless told otherwise."""
    return _fetch_pool().DEFAULT_CACHE


# Licences whose pictures may be shown in a report (with credit): public domain, CC0, CC-BY. Anything copyleft or
# restricted (GPL, LGPL, GFDL, CC-BY-SA, -NC, -ND) never, even when named beside a permissive one.
_SHOWABLE = re.compile(r"public[ -]domain|\bcc0\b|\bcc[ -]by\b", re.IGNORECASE)
_NOT_SHOWABLE = re.compile(r"gpl|gfdl|[- ]sa\b|share-?alike|[- ]n[cd]\b", re.IGNORECASE)


def showable(licence: str) -> bool:
    """Whether a picture under ``licence`` may be shown in a report: public domain, CC0 or CC-BY, nothing copyleft."""
    return bool(_SHOWABLE.search(licence)) and not _NOT_SHOWABLE.search(licence)


@dataclasses.dataclass(frozen=True)
class Picture:
    """One held-out image file and where it comes from, for scoring and for crediting it where it is shown."""

    path: Path
    package: str
    suite: str | None
    license: str
    author: str | None

    @property
    def name(self) -> str:
        return self.path.stem

    def load(self, size: int) -> torch.Tensor:
        """The image's centred square resized (Lanczos) to ``size``: (1, 3, size, size) in [0, 1].

        The shared photos are 512-pixel squares already, so at 512 they load unchanged."""
        from latentbridge.io import open_image, pil_to_tensor

        square = ImageOps.fit(open_image(self.path, rgb=True), (size, size), Image.Resampling.LANCZOS)
        return pil_to_tensor(square)

    def credit(self) -> str:
        where = self.package if self.suite in (None, "bookworm") else f"{self.package} ({self.suite})"
        return f"{self.name} ({self.author or 'author not named'}, {self.license}, {where})"


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """The images a benchmark scores: ``source`` "pool" (the pool's eval split) or "shared" (the 12 shared photos)."""

    source: str
    pictures: tuple[Picture, ...]
    total: int  # images in the set before a limit
    why: str = ""  # why this source was taken when it was not asked for

    def describe(self) -> str:
        """One sentence naming the set by its source packages, with image counts, and any limit."""
        what = ("the pool's eval split (all images of the reserved evaluation packages)" if self.source == "pool"
                else "the shared photos photo_036..photo_047")
        n = len(self.pictures)
        counted = f"Held-out: {n} images of {what}" if n == self.total else (
            f"Held-out, limited to the first {n} of its {self.total} images (--limit: a check of the wiring, not a "
            f"result): {what}")
        return f"{counted}: {self.packages()}.{' ' + self.why if self.why else ''}"

    def packages(self) -> str:
        """``package (n)`` for each source package, suites other than bookworm counted apart."""
        by_package: dict[str, Counter] = {}
        for p in self.pictures:
            by_package.setdefault(p.package, Counter())[p.suite or "bookworm"] += 1
        parts = []
        for package in sorted(by_package):
            suites = by_package[package]
            count = sum(suites.values())
            detail = "" if set(suites) <= {"bookworm"} else ": " + ", ".join(
                f"{k} {v}" for k, v in sorted(suites.items()))
            parts.append(f"{package} ({count}{detail})")
        return ", ".join(parts)


def held_out_set(source: str | None = None, *, pool: Path | None = None, limit: int | None = None) -> HeldOut:
    """The held-out images every quality benchmark scores.

    ``source="pool"``: every image of the pool's eval split (the reserved evaluation packages of
    scripts/fetch_pool.py, in every suite), read from ``pool/manifest.jsonl``. ``source="shared"``: the 12 shared
    photos photo_036..photo_047. ``None`` takes the pool when its manifest exists, else the shared photos (and says
    so). ``limit`` keeps the first images only (for quick checks).
    """
    pool = Path(pool).expanduser() if pool is not None else default_pool()
    manifest = pool / "manifest.jsonl"
    why = ""
    if source is None:
        source = "pool" if manifest.is_file() else "shared"
        if source == "shared":
            why = (f"The pool is absent ({shown(manifest)} not found; build it with scripts/fetch_pool.py), so the "
                   "shared photos stand in for it.")
    if source == "pool":
        if not manifest.is_file():
            raise SystemExit(f"error: no pool at {pool} ({manifest.name} not found): build it with "
                             "scripts/fetch_pool.py, pass --pool DIR, or take --held-out shared")
        pictures = _pool_eval(pool, manifest)
    elif source == "shared":
        pictures = _shared_held_out()
    else:
        raise ValueError(f"source={source!r}: 'pool' or 'shared'")
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit!r}: a whole number >= 1, or None for all")
    return HeldOut(source, tuple(pictures[:limit]), len(pictures), why)


def _pool_eval(pool: Path, manifest: Path) -> list[Picture]:
    reserved = _fetch_pool().RESERVED_EVAL
    pictures = []
    for number, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("split") != "eval" or row.get("package") not in reserved:
            continue
        path = pool / row["file"]
        if not path.is_file():
            raise SystemExit(f"error: {manifest} line {number} lists {row['file']}, which is absent: rebuild the pool "
                             "with scripts/fetch_pool.py --force " + row["package"])
        pictures.append(Picture(path, row["package"], row.get("suite"), row.get("license") or "unknown",
                                row.get("author") or row.get("copyright")))
    if not pictures:
        raise SystemExit(f"error: {manifest} lists no image of the reserved evaluation packages "
                         f"({', '.join(sorted(reserved))}): run scripts/fetch_pool.py for them")
    return sorted(pictures, key=lambda p: (p.package, p.suite or "", p.path.name))


def _shared_held_out() -> list[Picture]:
    paths = photos(held_out=True)
    sources = SHARED_PHOTOS / "sources.json"
    facts = {r["file"]: r for r in json.loads(sources.read_text())} if sources.is_file() else {}
    return [Picture(p, facts.get(p.name, {}).get("package", "unknown"), None,
                    facts.get(p.name, {}).get("license", "unknown"), facts.get(p.name, {}).get("author"))
            for p in paths]


def pictured(held: HeldOut, count: int) -> tuple[list[Picture], str]:
    """Up to ``count`` images a report may show, and the sentence that credits them.

    Only images whose licence :func:`showable` allows are ever shown. When no scored image qualifies (the pool's
    eval split is all copyleft; a limit may leave none), the shared held-out photos that do stand in, and the
    sentence says they are not among the scored images."""
    chosen = [p for p in held.pictures if showable(p.license)][:count]
    note = "Pictured (among the scored images): "
    if not chosen and SHARED_PHOTOS.is_dir():
        chosen = [p for p in _shared_held_out() if showable(p.license)][:count]
        licences = sorted({p.license for p in held.pictures})
        note = (f"No scored image may be shown (their licences: {', '.join(licences)}), so the pictures show "
                "shared photos that are not among the scored images: ")
    if not chosen:
        return [], "No picture: no image at hand has a licence that allows showing it."
    return chosen, note + "; ".join(p.credit() for p in chosen) + "."


def add_held_out_options(parser: argparse.ArgumentParser) -> None:
    """--held-out, --pool, --limit and --out: the options every quality benchmark takes."""
    parser.add_argument("--held-out", choices=("pool", "shared"),
                        help="the pool's eval split, or the 12 shared photos [pool when its manifest exists, else shared]")
    parser.add_argument("--pool", type=Path, default=None, help=f"pool folder [{_home(default_pool())}]")
    parser.add_argument("--limit", type=_positive, help="only the first N held-out images (a quick check; the report says so)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the report and its pictures [bench/results]")


def held_out_from(args: argparse.Namespace) -> HeldOut:
    return held_out_set(args.held_out, pool=args.pool, limit=args.limit)


def reproduce(script: str, argv: Sequence[str], held: HeldOut) -> str:
    """The closing line of a report: the command that reproduces it, with the held-out source pinned."""
    argv = list(argv)
    if not any(a == "--held-out" or a.startswith("--held-out=") for a in argv):
        argv += ["--held-out", held.source]
    words = [".venv/bin/python", f"bench/{Path(script).name}", *(_home(shown(a)) if os.path.isabs(a) else a
                                                                  for a in argv)]
    return "Reproduce: `" + " ".join(_quote(w) for w in words) + "`"


def _home(path: str | os.PathLike) -> str:
    """``path`` with the home folder written ``~``, so reports do not name the account they ran under."""
    home, text = str(Path.home()), str(path)
    return "~" + text[len(home):] if text == home or text.startswith(home + os.sep) else text


def _quote(word: str) -> str:
    """A shell word; a leading ``~/`` stays outside the quotes so that the shell still expands it."""
    return "~/" + shlex.quote(word[2:]) if word.startswith("~/") else shlex.quote(word)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 1")
    return value


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, text: str, *, out: Path = RESULTS) -> Path:
    """Write a benchmark's Markdown report to OUT/NAME.md (bench/results by default) and print it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.md"
    path.write_text(text + "\n")
    print(text)
    return path


