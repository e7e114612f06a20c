"""Training throughput: dataset-builder images/second per encoder, and the share of a training step spent loading data.

Usage: .venv/bin/python bench/bench_train.py [--images 12] [--steps 40]
Needs ../shared (real TAEF2/TAESana encoders and photos). Target: data loading under 10% of a training step.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from common import SHARED_WEIGHTS, markdown_table, photos, require, write_result

from latentbridge.train import Trainer, build_dataset, load_config, load_encoder, read_metrics

RECIPES = {  # recipe -> [recipe] table for a short run on the benchmark dataset
    "previewer": 'space = "flux2"',
    "upscaler": 'space = "flux2"',
    "interposer": 'src = "flux2"\ndst = "sana"',
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=12, help="photos to encode")
    ap.add_argument("--steps", type=int, default=40, help="training steps per recipe")
    args = ap.parse_args()
    os.environ.setdefault("LATENTBRIDGE_MODELS", str(require(SHARED_WEIGHTS, "real TAESD weights")))
    paths = photos()[: args.images]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        encoders = {name: load_encoder(name) for name in ("taef2", "taesana")}
        for name, enc in encoders.items():
            start = time.perf_counter()
            build_dataset(paths, [enc], Path(tmp) / name, size=256, crops=1)
            dt = time.perf_counter() - start
            rows.append([name, enc.space.id, len(paths), f"{len(paths) / dt:.2f}"])
        data = Path(tmp) / "both"
        build_dataset(paths, list(encoders.values()), data, size=256, extra_sizes=[128], crops=1,
                      eval_patterns=[p.name for p in paths[-2:]])
        step_rows = []
        for recipe, table in RECIPES.items():
            cfg = Path(tmp) / f"{recipe}.toml"
            cfg.write_text(f'[recipe]\nname = "{recipe}"\n{table}\n[train]\nsteps = {args.steps}\nbatch_size = 16\n'
                           f"log_every = 1\neval_every = 0\nsample_every = 0\ncheckpoint_every = 0\n")
            try:
                Trainer(load_config(cfg), data, Path(tmp) / f"run-{recipe}").run()
            except Exception as e:  # noqa: BLE001 - a recipe that cannot run here is reported, not fatal
                step_rows.append([recipe, "-", "-", f"not run: {e}"])
                continue
            metrics = [r for r in read_metrics(Path(tmp) / f"run-{recipe}" / "metrics.csv") if "data_share" in r][5:]
            share = sum(r["data_share"] for r in metrics) / len(metrics)
            sec = sum(r["sec_per_step"] for r in metrics) / len(metrics)
            step_rows.append([recipe, f"{sec * 1000:.1f}", f"{share:.1%}", "met" if share < 0.10 else "MISSED"])
    text = "\n\n".join([
        f"# Training throughput (CPU, {torch.get_num_threads()} threads)",
        "## Dataset builder (256 px crops, one encoder per run)",
        markdown_table(["encoder", "space", "images", "images/s"], rows),
        f"## Training step (batch 16, mean over steps 6..{args.steps})",
        markdown_table(["recipe", "ms/step", "data loading share", "target < 10%"], step_rows),
    ])
    write_result("train", text)


if __name__ == "__main__":
    main()
