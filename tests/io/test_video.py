from fractions import Fraction

import pytest
import torch

from latentbridge import io
from latentbridge.errors import InputError

pytest.importorskip("av", reason="video files need PyAV (the 'video' extra: pip install av)")


def _smooth_clip(frames: int, h: int = 32, w: int = 48) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([torch.stack([xs, ys, (xs + t / frames) % 1]) for t in range(frames)], 1)[None]


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_a_clip_round_trips_its_frames_size_and_rate(tmp_path, suffix):
    clip = _smooth_clip(17)
    path = io.save_video(tmp_path / f"clip{suffix}", clip, fps=Fraction(30000, 1001))
    back = io.load_video(path)
    assert back.frames.shape == (1, 3, 17, 32, 48) and back.fps == Fraction(30000, 1001)
    assert (back.frames - clip).abs().mean() < 0.03  # lossy codec, smooth content


def test_parse_fps_takes_integers_fractions_and_decimals():
    assert io.parse_fps("24") == 24 and io.parse_fps("30000/1001") == Fraction(30000, 1001)
    assert io.parse_fps(12.5) == Fraction(25, 2)
    for bad in ("fast", "0", "-3", "1/0"):
        with pytest.raises(InputError, match="frame rate"):
            io.parse_fps(bad)


def test_bad_video_writes_and_reads_are_refused_without_leftovers(tmp_path):
    with pytest.raises(InputError, match="even sides"):
        io.save_video(tmp_path / "odd.mp4", torch.rand(1, 3, 2, 15, 16), fps=8)
    with pytest.raises(InputError, match="written as"):
        io.save_video(tmp_path / "clip.avi", torch.rand(1, 3, 2, 16, 16), fps=8)
    with pytest.raises(InputError, match="one clip"):
        io.save_video(tmp_path / "two.mp4", torch.rand(2, 3, 2, 16, 16), fps=8)
    with pytest.raises(InputError, match="no such video file"):
        io.load_video(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a readable video"):
        io.load_video(tmp_path / "junk.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.mp4"]


def test_existing_output_is_kept_without_overwrite(tmp_path):
    path = io.save_video(tmp_path / "clip.mp4", torch.rand(1, 3, 2, 16, 16), fps=8)
    before = path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        io.save_video(path, torch.rand(1, 3, 3, 16, 16), fps=8)
    assert path.read_bytes() == before
    io.save_video(path, torch.rand(1, 3, 3, 16, 16), fps=8, overwrite=True)
    assert io.load_video(path).frames.shape[2] == 3
