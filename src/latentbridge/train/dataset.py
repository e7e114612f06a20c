"""Latent datasets: every image (random crops, flips) encoded by several encoders into aligned, sharded latents.

Layout of a dataset folder::

    manifest.json               images (path, sha256, split), encoders (space, domain), sizes, plan, shards
    shard-00000.safetensors     image@256 (uint8), <encoder>@<size> (float16) for each encoder and size

The plan (which crop of which image lands in which shard) is a pure function of the options and the images'
hashes, so a rerun after an interruption skips the finished shards and recomputes only the missing ones.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from .. import __version__, spaces
from ..errors import InputError
from ..io import atomic_path
from .encoders import Encoder

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class _Item:
    image: int
    crop: int
    box: tuple[int, int, int, int]  # left, top, right, bottom in the source image
    flip: bool


def _plan(sizes: list[tuple[int, int]], hashes: list[str], *, size: int, crops: int, flips: bool,
          seed: int) -> list[_Item]:
    """Random crops (side between ``size`` and the image's short side) and flips, reproducible per image."""
    items = []
    for i, ((w, h), digest) in enumerate(zip(sizes, hashes, strict=True)):
        short = min(w, h)
        for c in range(crops):
            rng = random.Random(f"{seed}:{digest}:{c}")
            side = short if c == 0 else rng.randint(min(size, short), short)
            left, top = rng.randint(0, w - side), rng.randint(0, h - side)
            if c == 0:
                left, top = (w - side) // 2, (h - side) // 2
            items.append(_Item(i, c, (left, top, left + side, top + side), flips and rng.random() < 0.5))
    return items


def _to_tensor(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def build_dataset(
    images: Sequence[Path],
    encoders: Sequence[Encoder],
    out: Path,
    *,
    size: int = 256,
    extra_sizes: Sequence[int] = (),
    crops: int = 1,
    flips: bool = True,
    seed: int = 0,
    shard_size: int = 256,
    eval_patterns: Sequence[str] = (),
    batch_size: int = 16,
    root: Path | None = None,
) -> dict:
    """Encode crops of ``images`` through every encoder into ``out`` (resumable); returns the manifest.

    Latents are stored in each encoder's own domain (``taesd`` for tiny autoencoders, ``raw`` for a VAE).
    Unreadable and tiny images are skipped and counted. Images whose path (relative to ``root``) matches one of
    ``eval_patterns`` are marked ``split = eval``.
    """
    all_sizes = sorted({size, *extra_sizes}, reverse=True)
    if not encoders:
        raise InputError("give at least one encoder (--encoders taef2,taesana)")
    if crops < 1 or size < 8:
        raise InputError("--crops must be at least 1 and --size at least 8")
    names = [e.name for e in encoders]
    if len(set(names)) != len(names):
        raise InputError(f"two encoders have the same name ({names}); give distinct files")
    for e in encoders:
        for s in all_sizes:
            if s % e.downscale:
                raise InputError(f"size {s} is not a multiple of {e.name}'s downscale {e.downscale}: choose sizes "
                                 f"that are multiples of {max(x.downscale for x in encoders)}")
    out.mkdir(parents=True, exist_ok=True)
    kept, skipped = [], {"unreadable": [], "too small": []}
    for p in tqdm(sorted(images), desc="checking images", unit="img", leave=False):
        try:
            with Image.open(p) as im:
                w, h = im.size
        except (UnidentifiedImageError, OSError, SyntaxError):
            skipped["unreadable"].append(str(p))
            continue
        if min(w, h) < size // 2:
            skipped["too small"].append(str(p))
            continue
        kept.append((p, (w, h)))
    if not kept:
        raise InputError(f"no usable images (skipped: {', '.join(f'{len(v)} {k}' for k, v in skipped.items())})")
    hashes = [_sha256(p) for p, _ in kept]
    image_entries = []
    for (p, (w, h)), digest in zip(kept, hashes, strict=True):
        rel = str(p.relative_to(root)) if root and p.is_relative_to(root) else p.name
        split = "eval" if any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(p.name, pat) for pat in eval_patterns) else "train"
        image_entries.append({"path": str(p), "name": rel, "sha256": digest, "width": w, "height": h, "split": split})
    items = _plan([s for _, s in kept], hashes, size=size, crops=crops, flips=flips, seed=seed)
    options = {"size": size, "extra_sizes": sorted(set(extra_sizes)), "crops": crops, "flips": flips, "seed": seed,
               "shard_size": shard_size, "encoders": {e.name: e.spec for e in encoders}}
    plan_id = hashlib.sha256(json.dumps([options, hashes], sort_keys=True).encode()).hexdigest()[:16]
    manifest_path = out / MANIFEST
    shards: dict[str, dict] = {}
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        if old.get("plan_id") != plan_id:
            raise InputError(f"{out} holds a different dataset (other images or options): use another output folder")
        shards = {s["file"]: s for s in old.get("shards", [])}
    manifest = {
        "format": FORMAT_VERSION, "producer": f"latentbridge {__version__}", "plan_id": plan_id, "options": options,
        "encoders": {e.name: {"spec": e.spec, "space": e.space.id, "domain": e.domain, "channels": e.channels,
                              "downscale": e.downscale} for e in encoders},
        "sizes": all_sizes, "images": image_entries, "skipped": skipped,
        "items": [{"image": it.image, "crop": it.crop, "box": list(it.box), "flip": it.flip} for it in items],
        "shards": [],
    }
    n_shards = (len(items) + shard_size - 1) // shard_size
    bar = tqdm(total=len(items), desc="encoding", unit="crop")
    for k in range(n_shards):
        fname = f"shard-{k:05d}.safetensors"
        chunk = items[k * shard_size:(k + 1) * shard_size]
        done = shards.get(fname)
        if done and (out / fname).is_file() and done.get("count") == len(chunk):
            manifest["shards"].append(done)
            bar.update(len(chunk))
            continue
        tensors = _encode_chunk(chunk, kept, encoders, all_sizes, batch_size, bar)
        with atomic_path(out / fname, overwrite=True) as tmp:
            save_file(tensors, str(tmp), metadata={"plan_id": plan_id, "first_item": str(k * shard_size)})
        manifest["shards"].append({"file": fname, "first": k * shard_size, "count": len(chunk)})
        _write_manifest(manifest_path, manifest)
    bar.close()
    _write_manifest(manifest_path, manifest)
    return manifest


def _encode_chunk(chunk: list[_Item], kept, encoders: Sequence[Encoder], sizes: list[int], batch_size: int,
                  bar: tqdm) -> dict[str, torch.Tensor]:
    pixels: dict[int, list[torch.Tensor]] = {s: [] for s in sizes}
    for it in chunk:
        with Image.open(kept[it.image][0]) as im:
            crop = im.convert("RGB").crop(it.box)
        if it.flip:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        for s in sizes:
            pixels[s].append(_to_tensor(crop.resize((s, s), Image.Resampling.LANCZOS, reducing_gap=3.0)))
    out: dict[str, torch.Tensor] = {}
    for s in sizes:
        batch = torch.stack(pixels[s])
        out[f"image@{s}"] = batch
        for e in encoders:
            lat = [e(batch[i:i + batch_size].float() / 255) for i in range(0, len(batch), batch_size)]
            out[f"{e.name}@{s}"] = torch.cat(lat).to(torch.float16).contiguous()
    bar.update(len(chunk))
    return out


def _write_manifest(path: Path, manifest: dict) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))


class DatasetInfo:
    """A built dataset's manifest, and the tensor names it offers."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise InputError(f"{self.root}: not a latentbridge dataset (no {MANIFEST}); build one with "
                             "'latentbridge dataset build'")
        self.manifest = json.loads(path.read_text())
        if sum(s["count"] for s in self.manifest["shards"]) != len(self.manifest["items"]):
            raise InputError(f"{self.root}: the dataset is incomplete; rerun the same 'dataset build' to finish it")

    @property
    def size(self) -> int:
        return int(self.manifest["options"]["size"])

    def keys(self) -> list[str]:
        """The tensor names every shard holds, e.g. ``image@256``, ``taef2@256``."""
        with safe_open(str(self.root / self.manifest["shards"][0]["file"]), "pt") as f:
            return sorted(f.keys())

    def key_for(self, space: str, size: int | None = None) -> str:
        """The tensor name of the first encoder that serves ``space`` (at ``size``, default the main size)."""
        sp = spaces.get(space)
        size = size or self.size
        for name, info in self.manifest["encoders"].items():
            if info["space"] == sp.id:
                key = f"{name}@{size}"
                if size not in self.manifest["sizes"]:
                    raise InputError(f"{self.root}: no latents at size {size} (sizes: {self.manifest['sizes']}); "
                                     f"rebuild with --extra-sizes {size}")
                return key
        have = ", ".join(f"{n} ({i['space']})" for n, i in self.manifest["encoders"].items())
        raise InputError(f"{self.root}: no encoder for {sp.id} in this dataset (it has {have}); rebuild it with one")

    def encoder_info(self, key: str) -> dict:
        """Space, domain, channels and downscale of the encoder behind a tensor name."""
        return self.manifest["encoders"][key.split("@")[0]]

    def summary(self) -> dict:
        """Counts for model cards: images per split, crops, encoders, sizes."""
        images = self.manifest["images"]
        return {"images_train": sum(i["split"] == "train" for i in images),
                "images_eval": sum(i["split"] == "eval" for i in images),
                "items": len(self.manifest["items"]), "crops_per_image": self.manifest["options"]["crops"],
                "encoders": {n: e["spec"] for n, e in self.manifest["encoders"].items()},
                "sizes": self.manifest["sizes"], "plan_id": self.manifest["plan_id"]}


class LatentDataset:
    """One split of a built dataset held in memory (images as float in [0, 1], latents as float32 on demand)."""

    def __init__(self, info: DatasetInfo, *, split: str | None = "train", keys: Sequence[str] | None = None):
        self.info = info
        items = info.manifest["items"]
        rows = [i for i, it in enumerate(items) if split is None or info.manifest["images"][it["image"]]["split"] == split]
        available = info.keys()
        wanted = list(keys) if keys is not None else available
        missing = [k for k in wanted if k not in available]
        if missing:
            raise InputError(f"{info.root}: the dataset has no {', '.join(missing)}; it has {', '.join(available)}. "
                             "Rebuild it with the encoders and sizes the recipe needs")
        self.split = split
        self.items = [items[i] for i in rows]
        self.tensors = self._load(wanted, rows)

    def _load(self, keys: list[str], rows: list[int]) -> dict[str, torch.Tensor]:
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        wanted = set(rows)
        for shard in self.info.manifest["shards"]:
            idx = [i - shard["first"] for i in range(shard["first"], shard["first"] + shard["count"]) if i in wanted]
            if not idx:
                continue
            with safe_open(str(self.info.root / shard["file"]), "pt") as f:
                for k in keys:
                    parts[k].append(f.get_tensor(k)[idx])
        return {k: torch.cat(v) for k, v in parts.items() if v}

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, indices: torch.Tensor | Sequence[int], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """Rows ``indices`` of every loaded tensor: images scaled to [0, 1], everything float32 on ``device``."""
        out = {}
        for k, t in self.tensors.items():
            rows = t[indices].to(device, torch.float32)
            out[k] = rows / 255 if k.startswith("image@") else rows
        return out
