"""The example photos and latents shipped in the package (made by the project from public-domain photos)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import io

EXAMPLES = Path(__file__).resolve().parent / "data" / "examples"


@dataclass
class DemoContext:
    """What every demo section works from."""

    names: list[str]
    images: torch.Tensor  # (B, 3, 256, 256) in [0, 1]
    latents: dict[str, io.LatentFile] = field(default_factory=dict)  # file stem -> latent


def load() -> DemoContext:
    """Read the bundled examples."""
    paths = sorted(EXAMPLES.glob("*.jpg"))
    images = torch.cat([io.load_image(p) for p in paths])
    latents = {p.stem: io.load_latent(p) for p in sorted(EXAMPLES.glob("*.safetensors"))}
    return DemoContext([p.stem for p in paths], images, latents)
