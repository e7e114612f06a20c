"""Images in and out: float tensors in [0, 1] inside, 8-bit files outside; grids and animations."""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .. import limits
from ..errors import InputError, TooLargeError
from .atomic import as_path, atomic_path, atomic_paths, check_readable

_WIDE_GREY = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}  # mode -> white level
_ORIENTATION = 0x0112  # the EXIF tag
_FLOAT_PIXELS = "floating-point pixels (Pillow mode F) have no standard range: save the picture with 8 or 16 bits"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
_PIL_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".gif": "GIF", ".bmp": "BMP"}


def load_image(path: str | os.PathLike, *, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Read an image file as (1, 3, H, W) float in [0, 1]; ``size`` resizes (Lanczos) to a side or (H, W).

    The file is read by :func:`open_image` (checked, upright); 16-bit grey levels keep their precision unless resized.
    """
    if size is not None:
        h, w = (size, size) if not isinstance(size, tuple | list) or len(size) != 2 else size
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in (h, w)):
            raise InputError(f"size={size!r}: give a side or (height, width) of whole numbers >= 1")
        limits.check_pixels(1, h, w, what="the resized image", fix="use a smaller size=")
    image = open_image(path, rgb=size is not None)
    if size is not None:
        image = image.resize((w, h), Image.Resampling.LANCZOS)
    return pil_to_tensor(image)


def open_image(path: str | os.PathLike, *, rgb: bool = False) -> Image.Image:
    """Decode an image file, turned as its EXIF orientation says; ``rgb`` gives 8-bit RGB (16-bit grey scaled down).

    Every reader of pictures goes through here or :func:`image_size`, so each gets the same checks: pictures above
    Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) or the pixel limit of
    :mod:`latentbridge.limits` raise :class:`TooLargeError` before they are decoded, and damaged or truncated files
    raise :class:`InputError` naming the file. Transparency is dropped (the colours under it are kept).
    """
    with _checked(path) as im:
        upright = ImageOps.exif_transpose(im)  # decodes every pixel: a truncated file fails here
        return _rgb(upright) if rgb else upright


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file as shown (EXIF orientation applied), from its header: the checks of
    :func:`open_image` without decoding the pixels (so a truncated file passes)."""
    with _checked(path) as im:
        turned = im.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
        return (im.height, im.width) if turned else (im.width, im.height)


@contextlib.contextmanager
def _checked(path: str | os.PathLike) -> Iterator[Image.Image]:
    """The opened image once its size passed the limits; any failure (opening or in the body) names the file."""
    path = check_readable(path, "an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                try:
                    limits.check_pixels(1, im.height, im.width, what="the picture", fix="shrink it first")
                except InputError as e:
                    raise TooLargeError(str(e)) from None
                if im.mode == "F":
                    raise InputError(_FLOAT_PIXELS)
                yield im
    except InputError as e:
        raise type(e)(f"{path}: {e}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooLargeError(f"{path}: refusing to decode a possible decompression bomb ({str(e).rstrip('.')}); if "
                            "the picture is genuine, shrink it first (or raise PIL.Image.MAX_IMAGE_PIXELS in "
                            "Python)") from None
    except MemoryError:
        raise
    except Exception as e:  # Pillow's decoders fail on hostile bytes in many ways (OSError, SyntaxError, struct.error)
        raise InputError(f"{path}: not a readable image ({e}); it may be truncated or of another format") from e


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> (1, 3, H, W) float in [0, 1]; 16-bit grey levels (modes I;16 and I, as Pillow reads 16-bit
    PNGs) keep their precision."""
    if image.mode in _WIDE_GREY:
        grey = np.asarray(image, dtype=np.float32) / _WIDE_GREY[image.mode]
        array = np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2)
    else:
        array = np.asarray(_rgb(image), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def _rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; wide grey levels are scaled down (Pillow would clip them), floating-point pixels are refused."""
    if image.mode == "F":
        raise InputError(_FLOAT_PIXELS)
    if image.mode in _WIDE_GREY:
        levels = np.asarray(image, dtype=np.float64) * (255 / _WIDE_GREY[image.mode])
        return Image.fromarray(np.clip(levels + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) or (3, H, W) in [0, 1] -> PIL images (clamped, rounded to 8 bits)."""
    x = _check_images(images).detach()
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InputError(f"images must be (B, 3, H, W); got {tuple(images.shape)}")
    x = x.float().nan_to_num(0.0).clamp(0, 1).mul(255).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in x]


def _check_images(images: object) -> torch.Tensor:
    """``images`` when it is a tensor of pixels in [0, 1] with data: floating point or bool, not complex, not meta
    (8-bit integers would be clamped to black and white without a word)."""
    ok = isinstance(images, torch.Tensor) and (images.is_floating_point() or images.dtype == torch.bool)
    if not ok or images.device.type == "meta":
        got = ("a meta tensor (no data)" if ok else images.dtype) if isinstance(images, torch.Tensor) \
            else type(images).__name__
        raise InputError(f"images must be a floating-point torch.Tensor (B, 3, H, W) in [0, 1]; got {got}. "
                         "Convert 8-bit pictures with .float() / 255")
    return images


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
    limits.check_not_empty(_check_images(images), "the image batch")
    if nrow is not None:
        limits.check_whole("nrow", nrow, unit="images per row")
    x = images if images.ndim == 4 else images.unsqueeze(0)
    if x.shape[0] > 1:
        x = make_grid(x, nrow=nrow)
    return save_pil(path, tensor_to_pil(x)[0], overwrite=overwrite, quality=quality)


def save_pil(path: str | os.PathLike, image: Image.Image, *, overwrite: bool = False, quality: int = 95) -> Path:
    """Write one PIL image atomically; the format follows the extension."""
    path = as_path(path)
    _check_quality(quality)
    _format_of(path)  # an unknown extension is refused before anything is written
    if not isinstance(image, Image.Image):
        raise InputError(f"save_pil needs a PIL image; got {type(image).__name__}")
    with atomic_path(path, overwrite=overwrite) as tmp:
        _write(image, tmp, path, quality)
    return path


def save_images(paths: Sequence[str | os.PathLike], images: torch.Tensor, *, overwrite: bool = False,
                quality: int = 95) -> list[Path]:
    """Write each image of a batch (B, 3, H, W) to its own file: all of them or none (replaced files come back)."""
    paths = [as_path(p) for p in paths]
    _check_quality(quality)
    if _check_images(images).ndim != 4 or len(paths) != images.shape[0]:
        raise InputError(f"{len(paths)} file names for images of shape {tuple(images.shape)}: give one name per image")
    for p in paths:
        _format_of(p)
    with atomic_paths(paths, overwrite=overwrite) as temps:
        for image, tmp, path in zip(tensor_to_pil(images), temps, paths, strict=True):
            _write(image, tmp, path, quality)
    return paths


def _format_of(path: Path) -> str:
    fmt = _PIL_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown image type {path.suffix!r}; use one of {', '.join(IMAGE_EXTENSIONS)}")
    return fmt


def _check_quality(quality: object) -> None:
    limits.check_whole("quality", quality, maximum=100)


def _write(image: Image.Image, tmp: Path, path: Path, quality: int) -> None:
    """``image`` into the temporary file ``tmp`` in the format of ``path``'s extension."""
    fmt = _format_of(path)
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    try:
        image.save(tmp, format=fmt, **options)
    except ValueError as e:  # the format's own limits (WebP: 16383 pixels a side)
        raise InputError(f"{path}: {fmt} cannot hold this {image.width}x{image.height} picture ({e}); write a .png "
                         "instead") from e


def save_animation(path: str | os.PathLike, frames: Sequence[torch.Tensor], *, duration_ms: int = 120,
                   overwrite: bool = False, loop: int = 0) -> Path:
    """Write frames ((3, H, W) or (B, 3, H, W) each; batches become grids) as an animated WebP or GIF."""
    path = Path(path)
    if path.suffix.lower() not in (".webp", ".gif"):
        raise InputError(f"{path}: animations are written as .webp or .gif")
    if not frames:
        raise InputError("an animation needs at least one frame")
    for frame in frames:
        limits.check_not_empty(frame, "a frame")
    limits.check_whole("duration_ms", duration_ms, unit="milliseconds")
    pil = [tensor_to_pil(f if f.ndim == 3 or f.shape[0] == 1 else make_grid(f))[0] for f in frames]
    fmt = "WEBP" if path.suffix.lower() == ".webp" else "GIF"
    with atomic_path(path, overwrite=overwrite) as tmp:
        extra = {"lossless": False, "quality": 90} if fmt == "WEBP" else {}
        pil[0].save(tmp, format=fmt, save_all=True, append_images=pil[1:], duration=duration_ms, loop=loop, **extra)
    return path


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files in ``folder`` and its subfolders, sorted."""
    folder = as_path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of images")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
