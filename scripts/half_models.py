#!/usr/bin/env python3
"""Rewrite model files at another storage dtype: float16, bfloat16 or float32.

Each FILE is read through the one weight loader and written back (atomically, in place unless ``-o`` names a folder)
with its floating-point tensors rounded to the dtype, its metadata kept as it was and the dtype recorded as
``latentbridge.storage``. Nothing else changes: the model card beside it is left alone (record the measured quality
change there; ``bench/bench_storage.py`` measures it). The networks are built in float32 and compute in their
caller's dtype whatever the file keeps, so only the file's size and the weights' rounding change.

    .venv/bin/python scripts/half_models.py FILE[:DTYPE] ... [--dtype float16] [-o FOLDER]

``FILE:DTYPE`` gives one file its own dtype (e.g. ``models/upscaler-flux2.safetensors:bfloat16``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetensors.torch import save_file

from latentbridge import weights
from latentbridge.errors import LatentBridgeError
from latentbridge.io import atomic_path


def convert(path: Path, dtype: str, out: Path) -> int:
    """Write ``path`` kept at ``dtype`` to ``out``; returns the new file's size in bytes."""
    tensors, metadata = weights.load_tensors(path)
    if not metadata:
        raise LatentBridgeError(f"{path}: no metadata, so not a latentbridge model file; nothing written")
    tensors, metadata = weights.stored(tensors, metadata, dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, overwrite=True) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", metavar="FILE[:DTYPE]")
    parser.add_argument("--dtype", default="float16", choices=list(weights.STORAGE_DTYPES),
                        help="storage dtype of the files that do not name their own (default: float16)")
    parser.add_argument("-o", "--out", type=Path, help="folder to write into (default: replace each file)")
    args = parser.parse_args(argv)
    try:
        for spec in args.files:
            name, _, dtype = spec.partition(":")
            path = Path(name)
            before = path.stat().st_size if path.is_file() else 0
            size = convert(path, dtype or args.dtype, (args.out / path.name) if args.out else path)
            print(f"{path.name}: {dtype or args.dtype}, {before / 1e6:.2f} MB -> {size / 1e6:.2f} MB")
    except LatentBridgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
