"""Tiny autoencoders (TAESD family): load any published file or layout, encode and decode fast, exactly.

``load(name_or_path)`` returns a :class:`TinyAutoencoder` whose ``encode(images)`` maps RGB in [0, 1] to latents
in the ``taesd`` domain and whose ``decode(latents)`` maps them back to RGB in about [0, 1].
"""

from .arch import VARIANTS
from .layouts import parse
from .loader import NAMES, clear_cache, load, locate
from .model import TinyAutoencoder

__all__ = ["NAMES", "VARIANTS", "TinyAutoencoder", "clear_cache", "load", "locate", "parse"]
