"""scripts/make_readme_images.py --video on a small random latent in the reference's NTCHW layout."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_readme_images.py"


def test_video_picture_has_one_frame_per_latent_frame_side_by_side_with_frame_one(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_readme_images", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(script, "OUT", tmp_path)
    latent = tmp_path / "wan.pth"
    torch.save(torch.randn(1, 5, 16, 4, 6), latent)  # NTCHW: 5 latent frames of a 32x48 clip
    script.video(latent, scale=2)
    with Image.open(tmp_path / "video-preview.webp") as im:
        assert im.n_frames == 5 and im.size == (2 * 12 + 3 * script.PAD, 8 + 14 + 2 * script.PAD)
