"""Storage dtype of the shipped models: held-out quality of each file kept in float32, float16 and bfloat16.

Each shipped file is rewritten at each dtype (scripts/half_models.py) into a temporary folder and used through the
public API on float32 latents, so the networks compute in float32 and only the rounding of the stored weights
differs. Held-out inputs (bench/common.held_out_set): the 12 held-out shared photos (photo_036..047) and the images
of the pool's eval split (the five packages reserved for evaluation) where the pool exists, each one's centred square
at SIDE x SIDE. Measures, as the other benchmarks take them:

* previewers and the FLUX.2 factors: PSNR against the photo averaged over each latent cell (bench_preview.py);
* upscaler: 2x from the TAEF2 encoding of the photo at SIDE/2, decoded by TAEF2, PSNR against the photo at SIDE
  (bench_upscale.py);
* FLUX.2 -> Sana: latent error relative to the TAESana encoding; Sana -> FLUX.2: PSNR of the TAEF2-decoded result
  against the photo (bench_interposer.py).

A half-precision dtype is kept for a file when its changes against float32, per image, average within 0.05 dB in
absolute value (0.002 relative latent error).

    .venv/bin/python bench/bench_storage.py [--side 256] [--pool N] [--models DIR]

The files measured must be the float32 originals. The shipped files are kept in float16 since they were converted
by scripts/half_models.py, so measure those of commit 1b7573f, the last with the float32 files
(``git show 1b7573f:src/latentbridge/models/NAME > DIR/NAME``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from common import SHARED_WEIGHTS, Picture, held_out_set, markdown_table, require, write_result
from half_models import convert

from latentbridge.metrics import psnr, relative_mse

DTYPES = ("float32", "float16", "bfloat16")
DB_LIMIT, REL_LIMIT = 0.05, 0.002


def pool_eval(limit: int | None) -> list[Picture]:
    """The pool's eval-split images, none where there is no pool; ``limit`` of them spread evenly over the set
    (sorted by package), not the first ones, when given."""
    held = held_out_set()
    if held.source != "pool":
        return []
    pictures = list(held.pictures)
    if limit is not None and limit < len(pictures):
        pictures = [pictures[i * len(pictures) // limit] for i in range(limit)]
    return pictures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=256, help="square image side in pixels (a multiple of 64)")
    parser.add_argument("--pool", type=int, help="use this many of the pool's eval images (evenly spread)")
    parser.add_argument("--models", type=Path, help="folder of the float32 model files (default: the shipped ones)")
    args = parser.parse_args()
    require(SHARED_WEIGHTS / "taef2_decoder.pth", "the real TAEF2 and TAESana weights")
    os.environ.setdefault("LATENTBRIDGE_MODELS", str(SHARED_WEIGHTS))
    os.environ["LATENTBRIDGE_OFFLINE"] = "1"
    from latentbridge import interposer, tiny, upscale, weights
    from latentbridge.preview import preview

    torch.set_grad_enabled(False)
    shipped = args.models or weights.PACKAGE_MODELS
    names = ["previewer-flux2", "previewer-sana", "factors-flux2", "upscaler-flux2", "interposer-flux2-to-sana",
             "interposer-sana-to-flux2"]
    for n in names:
        kept = weights.model_info(weights.safetensors_header(shipped / f"{n}.safetensors").metadata).storage
        if kept != "float32":
            raise SystemExit(f"error: {n} is kept in {kept} in {shipped}: measure its float32 original (--models DIR)")
    tmp = Path(tempfile.mkdtemp(prefix="lb-storage-"))
    folders = {d: tmp / d for d in DTYPES}
    for d, folder in folders.items():
        for n in names:
            convert(shipped / f"{n}.safetensors", d, folder / f"{n}.safetensors")
    f2, sana_enc = tiny.load("taef2"), tiny.load("taesana_encoder")
    held = list(held_out_set("shared").pictures)
    pool = pool_eval(args.pool)
    side = args.side
    scores: dict[str, dict[str, list[float]]] = {n: {d: [] for d in DTYPES} for n in names}
    for picture in held + pool:
        image = picture.load(side)
        f, s = f2.encode(image), sana_enc.encode(image)
        low = f2.encode(F.interpolate(image, size=(side // 2, side // 2), mode="bicubic", antialias=True,
                                      align_corners=False).clamp(0, 1))
        for d, folder in folders.items():
            file = lambda n, folder=folder: folder / f"{n}.safetensors"  # noqa: E731
            sc = scores
            sc["previewer-flux2"][d] += psnr(preview(f, "flux2", domain="taesd", method="neural",
                                                     previewer=file("previewer-flux2")), F.avg_pool2d(image, 8)).tolist()
            sc["previewer-sana"][d] += psnr(preview(s, "sana", domain="taesd", method="neural",
                                                    previewer=file("previewer-sana")), F.avg_pool2d(image, 32)).tolist()
            sc["factors-flux2"][d] += psnr(preview(f, "flux2", domain="taesd", factors=file("factors-flux2")),
                                           F.avg_pool2d(image, 8)).tolist()
            up = upscale.upscale(low, "flux2", 2, method="nn", domain="taesd", model=file("upscaler-flux2"))
            sc["upscaler-flux2"][d] += psnr(f2.decode(up), image).tolist()
            sc["interposer-flux2-to-sana"][d] += relative_mse(
                interposer.convert(f, "flux2", "sana", domain="taesd", models_dir=folder), s).tolist()
            back = interposer.convert(s, "sana", "flux2", domain="taesd", models_dir=folder)
            sc["interposer-sana-to-flux2"][d] += psnr(f2.decode(back), image).tolist()
    rows, verdicts = [], []
    for n in names:
        rel = n == "interposer-flux2-to-sana"
        unit, limit = ("relative latent error", REL_LIMIT) if rel else ("dB", DB_LIMIT)
        base = torch.tensor(scores[n]["float32"])
        row = [n, unit, f"{base.mean():.4f}"]
        ok = {}
        for d in DTYPES[1:]:
            delta = torch.tensor(scores[n][d]) - base
            ok[d] = float(delta.abs().mean())
            row += [f"{float(delta.mean()):+.4f}", f"{ok[d]:.4f}", f"{float(delta.abs().max()):.4f}"]
        fits = [d for d in DTYPES[1:] if ok[d] <= limit]
        choice = min(fits, key=ok.get) if fits else "float32"
        size = (folders[choice] / f"{n}.safetensors").stat().st_size
        rows.append([*row, choice, f"{size / 1e6:.2f}"])
        verdicts.append(f"- {n}: keep {choice}" + (f" (mean absolute change {ok[choice]:.4f} {unit}, limit {limit})"
                                                    if choice != "float32" else " (no half dtype within the limit)"))
    counts = {k: sum(p.package == k for p in pool) for k in sorted({p.package for p in pool})}
    pool_note = (f"{len(pool)} images of the pool's eval split, spread evenly over its {held_out_set().total} "
                 f"({', '.join(f'{k} {v}' for k, v in counts.items())})" if pool else
                 "no pool eval split (no pool: build it with scripts/fetch_pool.py)")
    text = "\n".join([
        "# Storage dtype of the shipped models (bench/bench_storage.py)", "",
        f"Held-out inputs: {len(held)} shared photos ({held[0].name}..{held[-1].name}) and {pool_note}, "
        f"{side}x{side} centre crops; {len(held) + len(pool)} images. Float32 latents, so every network computes in "
        "float32: only the stored weights' rounding differs. Change = half-precision file minus float32 file "
        "(mean over the images, and the largest change of any one image).", "",
        markdown_table(["file", "measure", "float32", "float16 change", "float16 mean abs", "float16 worst",
                        "bfloat16 change", "bfloat16 mean abs", "bfloat16 worst", "kept", "MB kept"], rows), "",
        f"Rule: a half dtype is kept when the mean of its per-image absolute changes is within {DB_LIMIT} dB "
        f"({REL_LIMIT} relative latent error); of two that fit, the one that changes less.", "", *verdicts, "",
        f"    .venv/bin/python bench/bench_storage.py --side {side}" + (f" --pool {args.pool}" if args.pool else "")
        + (" --models DIR  # DIR: the float32 files of commit 1b7573f" if args.models else ""),
    ])
    write_result("storage", text)


if __name__ == "__main__":
    main()
