"""Video files in and out through PyAV (the ``video`` extra): clips as float tensors (1, 3, F, H, W) in [0, 1].

The frame rate travels as an exact fraction (30000/1001 stays 30000/1001). Writing encodes H.264 (yuv420p) for
.mp4, .mov and .mkv, VP9 for .webm, atomically like every other output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import torch

from ..errors import InputError
from .atomic import atomic_path

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm")
_FORMATS = {".mp4": ("mp4", "libx264"), ".mov": ("mov", "libx264"), ".mkv": ("matroska", "libx264"),
            ".webm": ("webm", "libvpx-vp9")}
_INSTALL = "reading and writing video files needs PyAV: pip install 'latentbridge[video]' (or pip install av)"


@dataclass(frozen=True)
class Video:
    """A clip: frames (1, 3, F, H, W) float in [0, 1] and its frame rate in frames per second."""

    frames: torch.Tensor
    fps: Fraction


def is_video_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video file by its extension."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def parse_fps(value: str | float | Fraction) -> Fraction:
    """A frame rate from ``"24"``, ``"30000/1001"``, ``29.97`` or a Fraction; :class:`InputError` unless positive."""
    try:
        fps = Fraction(value).limit_denominator(100_000) if not isinstance(value, Fraction) else value
    except (ValueError, ZeroDivisionError, TypeError):
        raise InputError(f"frame rate {value!r} is not a number: give frames per second such as 24 or 30000/1001") from None
    if fps <= 0:
        raise InputError(f"frame rate {value!r} must be positive")
    return fps


def load_video(path: str | os.PathLike) -> Video:
    """Every frame of the first video stream of ``path`` as (1, 3, F, H, W) float in [0, 1], with its frame rate."""
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such video file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path} holds no video stream")
            stream = container.streams.video[0]
            frames = [torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    except av.FFmpegError as e:
        raise InputError(f"{path}: not a readable video ({e})") from None
    if not frames:
        raise InputError(f"{path} holds no frames")
    clip = torch.stack(frames).permute(3, 0, 1, 2).unsqueeze(0).float().div_(255.0)
    return Video(clip, Fraction(rate) if rate else Fraction(24))


def save_video(path: str | os.PathLike, frames: torch.Tensor, *, fps: float | Fraction, overwrite: bool = False,
               crf: int = 18) -> Path:
    """Write one clip (3, F, H, W) or (1, 3, F, H, W) in [0, 1] to ``path`` at ``fps`` (``crf``: H.264/VP9 quality)."""
    av = _av()
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise InputError(f"{path}: videos are written as {', '.join(VIDEO_EXTENSIONS)}")
    clip = frames[0] if frames.ndim == 5 and frames.shape[0] == 1 else frames
    if clip.ndim != 4 or clip.shape[0] != 3 or clip.shape[1] < 1:
        raise InputError(f"a video is one clip (3, F, H, W) or (1, 3, F, H, W); got {tuple(frames.shape)}")
    height, width = clip.shape[-2:]
    if height % 2 or width % 2:
        raise InputError(f"{path}: a {height}x{width} clip cannot be written as video (yuv420p needs even sides); "
                         "crop or pad it by one pixel")
    rate = parse_fps(fps)
    pixels = clip.detach().float().nan_to_num(0.0).clamp(0, 1).mul(255).round().to(torch.uint8)
    pixels = pixels.permute(1, 2, 3, 0).cpu().numpy()  # (F, H, W, 3)
    container_format, codec = _FORMATS[suffix]
    with atomic_path(path, overwrite=overwrite) as tmp, av.open(str(tmp), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf)} if codec == "libx264" else {"crf": str(crf + 14), "b": "0"}
        for array in pixels:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def _av() -> ModuleType:
    try:
        import av
    except ImportError:
        raise InputError(_INSTALL) from None
    return av
