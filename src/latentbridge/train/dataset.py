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
import os
import random
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from .. import __version__, limits, spaces
from ..errors import InputError, TooLargeError
from ..io import atomic_path, image_size, open_image
from .encoders import Encoder

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_SHARD = re.compile(r"shard-\d{5}\.safetensors")
_TEMPORARY = re.compile(r"\.(manifest\.json|shard-\d{5}\.safetensors)\..+\.partial")  # left by a killed build
_MANIFEST_BYTES_PER_ITEM = 200  # an item's entry in manifest.json, as written with indent=1


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
    images: Sequence[str | Path],
    encoders: Sequence[Encoder],
    out: str | Path,
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
    Unreadable (damaged, truncated, not a picture), too large (above PIL's decompression-bomb limit) and tiny images
    are skipped and listed in the manifest's ``skipped``. Images whose path (relative to ``root``) matches one of
    ``eval_patterns`` are marked ``split = eval``. Every option is checked before anything is written, and ``out``
    must be new, empty, or this same dataset (a rerun resumes it): a file the build did not write is never replaced.
    """
    all_sizes = _check_options(encoders, size, extra_sizes, crops, shard_size, batch_size)
    listed = None if isinstance(images, str | os.PathLike) else list(images)
    if listed is None or not all(isinstance(p, str | os.PathLike) for p in listed):
        raise InputError(f"images= lists image paths (io.list_images(folder) lists a folder's); got {images!r:.80}")
    out, images = Path(out), [Path(p) for p in listed]
    old = _existing_dataset(out)
    kept, skipped = [], {"unreadable": [], "too large": [], "too small": []}
    for p in tqdm(sorted(images), desc="checking images", unit="img", leave=False, disable=None):
        try:
            dims = _decoded_size(p, size)
        except TooLargeError:
            skipped["too large"].append(str(p))
        except (OSError, SyntaxError, ValueError, EOFError):
            skipped["unreadable"].append(str(p))
        else:
            if min(dims) < size // 2:
                skipped["too small"].append(str(p))
            else:
                kept.append((p, dims))
    if not kept:
        raise InputError(f"no usable images (skipped: {', '.join(f'{len(v)} {k}' for k, v in skipped.items())})")
    hashes = [_sha256(p) for p, _ in kept]
    image_entries = []
    for (p, (w, h)), digest in zip(kept, hashes, strict=True):
        rel = str(p.relative_to(root)) if root and p.is_relative_to(root) else p.name
        split = "eval" if any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(p.name, pat) for pat in eval_patterns) else "train"
        image_entries.append({"path": str(p), "name": rel, "sha256": digest, "width": w, "height": h, "split": split})
    options = {"size": size, "extra_sizes": sorted(set(extra_sizes)), "crops": crops, "flips": flips, "seed": seed,
               "shard_size": shard_size, "encoders": {e.name: e.spec for e in encoders}}
    plan_id = hashlib.sha256(json.dumps([options, hashes], sort_keys=True).encode()).hexdigest()[:16]
    if old is not None and old["plan_id"] != plan_id:
        raise InputError(f"{out} holds a different dataset (other images or options): use another output folder")
    _check_own_shards(out, plan_id)
    probes = {e.name: _probe(e) for e in encoders}
    if old is not None:
        _check_same_encoders(out, old, probes)
    shards = {s["file"]: s for s in old["shards"]} if old else {}
    limits.check_pixels(min(shard_size, len(kept) * crops), size, size, what="a shard of crops (held in memory "
                        "while it is encoded)", fix="a smaller shard_size= or size=")
    finished = sum(s["count"] for s in shards.values() if (out / s["file"]).is_file())
    _check_space(out, len(kept) * crops - finished, encoders, all_sizes)
    items = _plan([s for _, s in kept], hashes, size=size, crops=crops, flips=flips, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = {
        "format": FORMAT_VERSION, "producer": f"latentbridge {__version__}", "plan_id": plan_id, "options": options,
        "encoders": {e.name: {"spec": e.spec, "space": e.space.id, "domain": e.domain, "channels": e.channels,
                              "downscale": e.downscale, "probe": probes[e.name]} for e in encoders},
        "sizes": all_sizes, "images": image_entries, "skipped": skipped,
        "items": [{"image": it.image, "crop": it.crop, "box": list(it.box), "flip": it.flip} for it in items],
        "shards": [],
    }
    n_shards = (len(items) + shard_size - 1) // shard_size
    bar = tqdm(total=len(items), desc="encoding", unit="crop", disable=None)
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


def _whole(value: object) -> bool:
    """An int that is not a bool (True would pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_options(encoders: Sequence[Encoder], size: int, extra_sizes: Sequence[int], crops: int, shard_size: int,
                   batch_size: int) -> list[int]:
    """Every sizes and count checked before anything is read or written; returns the sizes, largest first."""
    if not encoders:
        raise InputError("give at least one encoder (encoders=, e.g. taef2 and taesana)")
    wrong = [e for e in encoders if not isinstance(e, Encoder)] if not isinstance(encoders, str) else [encoders]
    if wrong:
        raise InputError(f"encoders= lists Encoder objects, each from train.load_encoder (e.g. load_encoder('taef2')); "
                         f"got {wrong[0]!r}")
    for name, value, least in (("size", size, 8), ("crops", crops, 1), ("shard_size", shard_size, 1),
                               ("batch_size", batch_size, 1)):
        if not _whole(value) or value < least:
            raise InputError(f"{name}={value!r}: give a whole number of at least {least}")
    for s in extra_sizes:
        if not _whole(s) or not 8 <= s <= size:
            raise InputError(f"extra size {s!r}: extra sizes are smaller copies of each crop, whole numbers from 8 "
                             f"up to the crop size {size}")
    names = [e.name for e in encoders]
    if len(set(names)) != len(names):
        raise InputError(f"two encoders have the same name ({names}); give distinct files")
    all_sizes = sorted({size, *extra_sizes}, reverse=True)
    for e in encoders:
        for s in all_sizes:
            if s % e.downscale:
                raise InputError(f"size {s} is not a multiple of {e.name}'s downscale {e.downscale}: choose sizes "
                                 f"that are multiples of {max(x.downscale for x in encoders)}")
    return all_sizes


def _decoded_size(path: Path, size: int) -> tuple[int, int]:
    """The image's width and height as shown, once it has decoded to the end: a truncated file fails here, not
    mid-build. The checks every reader of pictures gets come first (decompression bombs, the pixel limit)."""
    dims = image_size(path)
    with Image.open(path) as im:
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale; every byte is still read
        im.load()
    return dims


def _existing_dataset(out: Path) -> dict | None:
    """The manifest already in ``out`` (None for a new or empty folder); refuses a folder that is not a dataset."""
    if out.is_symlink() and not out.exists():
        raise InputError(f"{out}: a link to {out.readlink()}, which does not exist; choose another output folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: a file, not a folder; choose another output folder")
    if not out.is_dir():
        return None
    if (out / MANIFEST).exists():
        return read_manifest(out / MANIFEST)
    foreign = sorted(p.name for p in out.iterdir() if not _TEMPORARY.fullmatch(p.name)
                     and not (_SHARD.fullmatch(p.name) and p.is_file()))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise InputError(f"{out} is not empty and is not a latentbridge dataset (it holds {shown}): choose a new or "
                         "empty folder, so that none of its files is replaced")
    return None


def _check_own_shards(out: Path, plan_id: str) -> None:
    """Every shard file in ``out`` must carry ``plan_id``: the build replaces only shards it wrote itself."""
    if not out.is_dir():
        return
    for p in sorted(out.iterdir()):
        if not _SHARD.fullmatch(p.name):
            continue
        try:
            with safe_open(str(p), "pt") as f:
                owner = (f.metadata() or {}).get("plan_id")
        except (SafetensorError, OSError, ValueError):
            owner = None
        if owner != plan_id:
            raise InputError(f"{p}: not a shard of this dataset (unreadable, or written by another build or "
                             "program), so the build will not replace it: move it elsewhere, or build into another "
                             "folder")


def _probe(encoder: Encoder) -> list[float]:
    """The encoder's latent of a fixed gradient picture: a fingerprint of its weights that survives a device change."""
    side = 2 * encoder.downscale
    ramp = torch.linspace(0, 1, side)
    picture = torch.stack([ramp[None, :].expand(side, side), ramp[:, None].expand(side, side),
                           (ramp[None, :] * ramp[:, None])])[None]
    return [round(float(v), 4) for v in encoder(picture).flatten()]


def _check_same_encoders(out: Path, old: dict, probes: dict[str, list[float]]) -> None:
    """A resumed build must encode with the weights it started with, or its shards would silently disagree."""
    for name, probe in probes.items():
        before = old["encoders"].get(name, {}).get("probe")
        if before is None:  # a dataset begun before fingerprints were kept
            continue
        a, b = torch.tensor(before, dtype=torch.float64), torch.tensor(probe, dtype=torch.float64)
        if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-2, atol=1e-2 * (1 + float(a.abs().max()))):
            raise InputError(f"{out} was begun with other weights for the encoder {name} (its latents of a test "
                             "picture differ): resume with the same weights, or build into another folder")


def _check_space(out: Path, new_items: int, encoders: Sequence[Encoder], sizes: list[int]) -> None:
    """Refuse a dataset larger than the free space of its disk before any crop is encoded."""
    per_item = _MANIFEST_BYTES_PER_ITEM + sum(
        3 * s * s + sum(2 * e.channels * (s // e.downscale) ** 2 for e in encoders) for s in sizes)
    need = max(0, new_items) * per_item
    existing = out
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if need > free:
        raise InputError(f"the dataset would need about {need / 1e9:.3g} GB ({new_items:,} crops) but the disk of "
                         f"{out} has {free / 1e9:.3g} GB free: use fewer crops, smaller sizes, or another disk")


def read_manifest(path: Path) -> dict:
    """A dataset's ``manifest.json``, checked to be one ``dataset build`` wrote and still whole."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{path}: damaged dataset manifest (not valid JSON); rebuild the dataset into a new "
                         "folder") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the dataset manifest ({e.strerror or e})") from None
    if not isinstance(data, dict) or "plan_id" not in data or data.get("format") != FORMAT_VERSION:
        raise InputError(f"{path}: not a latentbridge dataset manifest (format {FORMAT_VERSION}); build the dataset "
                         "into a new folder")
    kinds = {"plan_id": str, "options": dict, "encoders": dict, "sizes": list, "images": list, "items": list,
             "shards": list}
    bad = [k for k, kind in kinds.items() if not isinstance(data.get(k), kind)]
    images = data["images"] if isinstance(data.get("images"), list) else []
    if not bad and not all(isinstance(s, dict) and _SHARD.fullmatch(str(s.get("file"))) and _whole(s.get("first"))
                           and _whole(s.get("count")) for s in data["shards"]):
        bad.append("shards")
    if not bad and not all(isinstance(i, dict) and isinstance(i.get("split"), str) for i in images):
        bad.append("images")
    if not bad and not all(isinstance(e, dict) for e in data["encoders"].values()):
        bad.append("encoders")
    if not bad and not all(isinstance(it, dict) and _whole(it.get("image")) and 0 <= it["image"] < len(images)
                           for it in data["items"]):
        bad.append("items")
    if bad:
        raise InputError(f"{path}: damaged dataset manifest ({', '.join(bad)}); rebuild the dataset into a new "
                         "folder")
    return data


def _encode_chunk(chunk: list[_Item], kept, encoders: Sequence[Encoder], sizes: list[int], batch_size: int,
                  bar: tqdm) -> dict[str, torch.Tensor]:
    pixels: dict[int, list[torch.Tensor]] = {s: [] for s in sizes}
    for it in chunk:
        crop = open_image(kept[it.image][0], rgb=True).crop(it.box)  # upright, 16-bit levels kept
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
        self.manifest = read_manifest(path)
        shards = self.manifest["shards"]
        if not shards or sum(s["count"] for s in shards) != len(self.manifest["items"]) or not all(
                (self.root / s["file"]).is_file() for s in shards):
            raise InputError(f"{self.root}: the dataset is incomplete; rerun the same 'dataset build' to finish it")
        for shard in shards:
            with self.open_shard(shard["file"]) as f:
                owner = (f.metadata() or {}).get("plan_id")
                rows = {f.get_slice(k).get_shape()[0] for k in f.keys()}
            if owner != self.manifest["plan_id"] or rows != {shard["count"]}:
                raise InputError(f"{self.root / shard['file']}: does not match {MANIFEST} (a shard of another "
                                 "dataset, or damaged); rebuild the dataset into a new folder")

    def open_shard(self, file: str):
        """``safe_open`` of one shard, or an :class:`InputError` naming it when it is damaged."""
        path = self.root / file
        try:
            return safe_open(str(path), "pt")
        except (SafetensorError, OSError):
            raise InputError(f"{path}: damaged shard; delete it and rerun the same 'dataset build' to recompute "
                             "it") from None

    @property
    def size(self) -> int:
        return int(self.manifest["options"]["size"])

    def keys(self) -> list[str]:
        """The tensor names every shard holds, e.g. ``image@256``, ``taef2@256``."""
        with self.open_shard(self.manifest["shards"][0]["file"]) as f:
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
                                     f"rebuild with extra_sizes={size}")
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
            with self.info.open_shard(shard["file"]) as f:
                try:
                    for k in keys:
                        parts[k].append(f.get_tensor(k)[idx])
                except SafetensorError:
                    raise InputError(f"{self.info.root / shard['file']}: a shard without {k}; the dataset's files "
                                     "do not match its manifest: rebuild it") from None
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
