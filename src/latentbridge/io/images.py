"""Images in and out: float tensors in [0, 1] inside, 8-bit files outside; grids and animations."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from .atomic import atomic_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
_PIL_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".gif": "GIF", ".bmp": "BMP"}


def load_image(path: str | os.PathLike, *, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Read an image file as (1, 3, H, W) float in [0, 1]; ``size`` resizes (Lanczos) to a side or (H, W)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None:
                h, w = (size, size) if isinstance(size, int) else size
                im = im.resize((w, h), Image.Resampling.LANCZOS)
            return pil_to_tensor(im)
    except FileNotFoundError as e:
        raise InputError(f"{path}: no such image file") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputError(f"{path}: not a readable image ({e})") from e


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> (1, 3, H, W) float in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) or (3, H, W) in [0, 1] -> PIL images (clamped, rounded to 8 bits)."""
    x = images.detach()
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InputError(f"images must be (B, 3, H, W); got {tuple(images.shape)}")
    x = x.float().nan_to_num(0.0).clamp(0, 1).mul(255).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in x]


def make_grid(images: torch.Tensor, *, nrow: int | None = None, padding: int = 2, fill: float = 1.0) -> torch.Tensor:
    """Tile a batch (B, 3, H, W) into one (1, 3, H', W') image, ``nrow`` images per row (default: about square)."""
    if images.ndim != 4:
        raise InputError(f"a grid needs a batch (B, 3, H, W); got {tuple(images.shape)}")
    b, c, h, w = images.shape
    cols = nrow or math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    grid = images.new_full((c, rows * h + (rows + 1) * padding, cols * w + (cols + 1) * padding), fill)
    for i in range(b):
        r, k = divmod(i, cols)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid.unsqueeze(0)


def save_image(path: str | os.PathLike, images: torch.Tensor, *, nrow: int | None = None, overwrite: bool = False,
               quality: int = 95) -> Path:
    """Write images in [0, 1] atomically; a batch becomes a grid."""
    x = images if images.ndim == 4 else images.unsqueeze(0)
    if x.shape[0] > 1:
        x = make_grid(x, nrow=nrow)
    return save_pil(path, tensor_to_pil(x)[0], overwrite=overwrite, quality=quality)


def save_pil(path: str | os.PathLike, image: Image.Image, *, overwrite: bool = False, quality: int = 95) -> Path:
    """Write one PIL image atomically; the format follows the extension."""
    path = Path(path)
    fmt = _PIL_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown image type {path.suffix!r}; use one of {', '.join(IMAGE_EXTENSIONS)}")
    with atomic_path(path, overwrite=overwrite) as tmp:
        options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
        image.save(tmp, format=fmt, **options)
    return path


def save_animation(path: str | os.PathLike, frames: Sequence[torch.Tensor], *, duration_ms: int = 120,
                   overwrite: bool = False, loop: int = 0) -> Path:
    """Write frames ((3, H, W) or (B, 3, H, W) each; batches become grids) as an animated WebP or GIF."""
    path = Path(path)
    if path.suffix.lower() not in (".webp", ".gif"):
        raise InputError(f"{path}: animations are written as .webp or .gif")
    if not frames:
        raise InputError("an animation needs at least one frame")
    pil = [tensor_to_pil(f if f.ndim == 3 or f.shape[0] == 1 else make_grid(f))[0] for f in frames]
    fmt = "WEBP" if path.suffix.lower() == ".webp" else "GIF"
    with atomic_path(path, overwrite=overwrite) as tmp:
        extra = {"lossless": False, "quality": 90} if fmt == "WEBP" else {}
        pil[0].save(tmp, format=fmt, save_all=True, append_images=pil[1:], duration=duration_ms, loop=loop, **extra)
    return path


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files in ``folder`` and its subfolders, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of images")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
