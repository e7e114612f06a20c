"""Tiny autoencoders (TAESD family): load any published file or layout, encode and decode fast, exactly.

``load(name_or_path)`` returns a :class:`TinyAutoencoder` whose ``encode(images)`` maps RGB in [0, 1] to latents
in the ``taesd`` domain and whose ``decode(latents)`` maps them back to RGB in about [0, 1]. Video files (TAEHV
family, TAESDV) load as a :class:`TinyVideoAutoencoder`, which takes clips (B, 3, F, H, W) and latents
(B, C, T, h, w) and decodes in streamed chunks.
"""

from .arch import VARIANTS
from .layouts import parse
from .loader import NAMES, clear_cache, load, locate
from .model import TinyAutoencoder
from .video import NAMES as VIDEO_NAMES
from .video import TinyVideoAutoencoder

__all__ = ["NAMES", "VARIANTS", "VIDEO_NAMES", "TinyAutoencoder", "TinyVideoAutoencoder", "clear_cache", "load", "locate",
           "parse"]
