import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from toy_recipe import fake_encoder


def make_images(folder: Path, n: int = 10, size: int = 48) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        base = rng.integers(0, 255, (1, 1, 3))
        grad = np.linspace(0, 1, size)[None, :, None] * rng.integers(0, 255, (1, 1, 3))
        arr = np.clip(base * 0.5 + grad * 0.5 + rng.normal(0, 20, (size, size + 8 * (i % 2), 3))[:, :size], 0, 255)
        p = folder / f"img_{i:02d}.png"
        Image.fromarray(arr.astype(np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.fixture
def toy_dataset(tmp_path):
    from latentbridge.train import build_dataset

    paths = make_images(tmp_path / "images")
    out = tmp_path / "data"
    build_dataset(paths, [fake_encoder()], out, size=32, crops=2, shard_size=6, eval_patterns=["img_0[89]*"],
                  root=tmp_path / "images")
    return out
