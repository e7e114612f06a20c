"""Hostile latent and image files, each with words its refusal must contain; shared by the io and CLI tests."""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

LATENT = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)


def _npy(array: np.ndarray, **kw) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        np.save(folder / "x.npy", array, **kw)
        return folder / "x.npy"
    return make


def _cut(make: Callable[[Path], Path], keep: Callable[[int], int]) -> Callable[[Path], Path]:
    def cut(folder: Path) -> Path:
        path = make(folder)
        data = path.read_bytes()
        path.write_bytes(data[:keep(len(data))])
        return path
    return cut


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name
    return make


def _safetensors(name: str, tensors: dict, metadata: dict | None = None) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        save_file(tensors, str(folder / name), metadata=metadata)
        return folder / name
    return make


def _lying_header(folder: Path) -> Path:
    """A safetensors header that promises more data than the file holds."""
    path = _safetensors("x.safetensors", {"latent": torch.from_numpy(LATENT)})(folder)
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["latent"]["data_offsets"] = [0, 10**9]
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])
    return path


def _torch(name: str, obj: object) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        torch.save(obj, folder / name)
        return folder / name
    return make


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


def _folder(name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).mkdir()
        return folder / name
    return make


def _dangling(name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).symlink_to(folder / "gone" / name)
        return folder / name
    return make


def _loop(name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).symlink_to(folder / f"other-{name}")
        (folder / f"other-{name}").symlink_to(folder / name)
        return folder / name
    return make


# name -> (make the file in a folder, words the refusal names)
LATENT_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "structured npy": (_npy(np.zeros((1, 4, 8, 8), dtype=[("a", "<f4"), ("b", "<i4")])), "structured array"),
    "object npy": (_npy(np.array([{"a": 1}], dtype=object), allow_pickle=True), "pickle"),
    "truncated npy": (_cut(_npy(LATENT), lambda n: n // 2), "truncated"),
    "npy cut in its header": (_cut(_npy(LATENT), lambda n: 20), "truncated"),
    "empty npy": (_bytes("x.npy", b""), "not a .npy file"),
    "text named npy": (_bytes("x.npy", b"hello, not an array"), "not a .npy file"),
    "0-d npy": (_npy(np.float32(3.0)), "single number"),
    "complex npy": (_npy(LATENT.astype(np.complex64)), "complex64"),
    "bool npy": (_npy(LATENT > 0), "dtype bool"),
    "int npy": (_npy((LATENT * 10).astype(np.int32)), "int32"),
    "string npy": (_npy(np.array(["a", "b"])), "not numbers"),
    "float8 safetensors": (_safetensors("x.safetensors", {"latent": torch.zeros(1, 4, 8, 8, dtype=torch.float8_e4m3fn)}),
                           "float8_e4m3fn"),
    "truncated safetensors": (_cut(_safetensors("x.safetensors", {"latent": torch.from_numpy(LATENT)}),
                                   lambda n: n - 50), "truncated"),
    "safetensors with a lying header": (_lying_header, "not a readable safetensors"),
    "safetensors header length of a petabyte": (_bytes("x.safetensors", struct.pack("<Q", 10**15) + b"{}"),
                                                "not a readable safetensors"),
    "latent without latent_tensor": (_safetensors("x.latent", {"foo": torch.from_numpy(LATENT)}), "latent_tensor"),
    "latent with only the marker": (_safetensors("x.latent", {"latent_format_version_0": torch.tensor([])}),
                                    "latent_tensor"),
    "metadata naming an unknown space": (_safetensors("x.safetensors", {"latent": torch.from_numpy(LATENT)},
                                                      {"latentbridge.space": "nope"}), "does not know"),
    "truncated pt": (_cut(_torch("x.pt", {"samples": torch.from_numpy(LATENT)}), lambda n: n // 2), "truncated"),
    "pt that runs code": (_bytes("x.pt", __import__("pickle").dumps(_RunsCode())), "would run code"),
    "pt holding a list": (_torch("x.pt", [1, 2, 3]), "expected a tensor"),
    "int pt": (_torch("x.pt", {"samples": torch.zeros(1, 4, 8, 8, dtype=torch.int64)}), "int64"),
    "folder named like a latent": (_folder("x.safetensors"), "is a folder"),
    "dangling link": (_dangling("x.npy"), "does not exist"),
    "loop of links": (_loop("x.safetensors"), "loop of links"),
}


def _png(name: str, width: int, height: int, depth: int, colour: int, rows: bytes) -> Callable[[Path], Path]:
    """A PNG written chunk by chunk (Pillow writes neither 16-bit colour nor lying sizes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    def make(folder: Path) -> Path:
        ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
        data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
        (folder / name).write_bytes(data)
        return folder / name
    return make


def _pil(name: str, image: Image.Image, **kw) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        image.save(folder / name, **kw)
        return folder / name
    return make


PHOTO = (np.random.default_rng(1).random((32, 48, 3)) * 255).astype(np.uint8)

# name -> (make the file, words the refusal names)
IMAGE_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "decompression bomb": (_png("bomb.png", 20000, 20000, 1, 0, b"\x00"), "decompression bomb"),
    "picture over Pillow's warning limit": (_png("big.png", 10000, 10000, 1, 0, b"\x00"), "decompression bomb"),
    "truncated png": (_cut(_pil("x.png", Image.fromarray(PHOTO)), lambda n: n // 2), "truncated"),
    "truncated jpeg": (_cut(_pil("x.jpg", Image.fromarray(PHOTO)), lambda n: n // 2), "truncated"),
    "empty file": (_bytes("x.png", b""), "not a readable image"),
    "text named png": (_bytes("x.png", b"hello"), "not a readable image"),
    "floating-point tiff": (_pil("x.tiff", Image.new("F", (8, 8), 0.5)), "floating-point"),
    "folder named like a picture": (_folder("x.png"), "is a folder"),
    "dangling link": (_dangling("x.png"), "does not exist"),
    "loop of links": (_loop("x.png"), "loop of links"),
}


def png16(name: str, levels: np.ndarray) -> Callable[[Path], Path]:
    """A 16-bit PNG of ``levels`` (H, W) grey, (H, W, 2) grey+alpha, (H, W, 3) RGB or (H, W, 4) RGBA."""
    h, w = levels.shape[:2]
    channels = 1 if levels.ndim == 2 else levels.shape[2]
    rows = b"".join(b"\x00" + levels[y].astype(">u2").tobytes() for y in range(h))
    return _png(name, w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[channels], rows)
