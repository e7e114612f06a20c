"""``latentbridge encode`` / ``decode`` with video files: frame counts, frame rates and refusals."""

from fractions import Fraction
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from tests.contract import assert_refused, run_cli, snapshot

from latentbridge.tiny import layouts, taehv

av = pytest.importorskip("av", reason="video files need PyAV (the 'video' extra: pip install av)")

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_tiny_cache")

TAEW2_1 = taehv.VideoLayout("base", 16, 1, (2, 2, 1), (1, 2, 2))


def _random_file(path: Path, layout: taehv.VideoLayout) -> Path:
    """Random weights in the upstream key layout, scaled so decoded pixels spread around 0.5."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for prefix, net in (("encoder", taehv.encoder(layout)), ("decoder", taehv.decoder(layout))):
        for key, value in net.state_dict().items():
            std = value[0].numel() ** -0.5 if value.ndim == 4 else 0.05
            state[f"{prefix}.{key}"] = torch.randn(value.shape, generator=generator) * std
    state["decoder.22.bias"] = torch.full((3 * layout.patch ** 2,), 0.5)
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A random-weight file in taew2_1's layout under a name that does not say its space."""
    return _random_file(tmp_path_factory.mktemp("models") / "video_vae.pth", TAEW2_1)


def _clip(path: Path, frames: int, *, rate: Fraction = Fraction(12), size: tuple[int, int] = (32, 48)) -> Path:
    """An H.264 clip of moving colour gradients written with PyAV."""
    h, w = size
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for t in range(frames):
            rgb = torch.stack([xs, ys, (xs + t / frames) % 1]).mul(255).round().byte().permute(1, 2, 0)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb.numpy(), format="rgb24")))
        container.mux(stream.encode(None))
    return path


def _probe(path: Path) -> tuple[int, Fraction, tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.average_rate, (stream.height, stream.width)


def _meta(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata())


def test_a_17_frame_mp4_round_trips_frame_count_and_rate(tmp_path, model_file):
    clip = _clip(tmp_path / "clip.mp4", 17)
    result = run_cli("encode", clip, "--model", model_file, "--space", "wan21", "-o", tmp_path / "clip.safetensors")
    assert result.code == 0 and result.err == "", result.err
    meta = _meta(tmp_path / "clip.safetensors")
    assert (meta["latentbridge.space"], meta["latentbridge.fps"], meta["latentbridge.frames"]) == ("wan21", "12", "17")
    with safe_open(str(tmp_path / "clip.safetensors"), "pt") as f:
        assert tuple(f.get_tensor(next(iter(f.keys()))).shape) == (1, 16, 5, 4, 6)
    result = run_cli("decode", tmp_path / "clip.safetensors", "--model", model_file, "-o", tmp_path / "back.mp4")
    assert result.code == 0 and result.err == "", result.err
    assert _probe(tmp_path / "back.mp4") == (17, Fraction(12), (32, 48))


@pytest.mark.parametrize(("frames", "latent_frames", "decoded", "padded"), [(16, 4, 13, False), (18, 5, 17, True)])
def test_other_frame_counts_follow_taehv_py_and_say_so(tmp_path, model_file, frames, latent_frames, decoded, padded):
    clip = _clip(tmp_path / "clip.mp4", frames)
    result = run_cli("encode", clip, "--model", model_file, "--space", "wan21", "-o", tmp_path / "clip.safetensors")
    assert result.code == 0
    assert result.err.startswith(f"note: {frames} frames is not 1 + 4k") and f"decode to {decoded} frames" in result.err
    assert ("padded with its last frame to 20 frames" in result.err) == padded
    assert f"{latent_frames}, 4, 6)" in result.out
    result = run_cli("decode", tmp_path / "clip.safetensors", "--model", model_file, "-o", tmp_path / "back.mp4")
    assert result.code == 0 and f"had {frames} frames" in result.err
    assert _probe(tmp_path / "back.mp4")[0] == decoded


def test_fps_options_set_the_recorded_and_the_written_rate(tmp_path, model_file):
    clip = _clip(tmp_path / "clip.mp4", 5)
    run_cli("encode", clip, "--model", model_file, "--space", "wan21", "--fps", "30000/1001", "-o", tmp_path / "a.safetensors")
    assert _meta(tmp_path / "a.safetensors")["latentbridge.fps"] == "30000/1001"
    assert run_cli("decode", tmp_path / "a.safetensors", "--model", model_file, "-o", tmp_path / "a.mp4").code == 0
    assert _probe(tmp_path / "a.mp4")[1] == Fraction(30000, 1001)
    assert run_cli("decode", tmp_path / "a.safetensors", "--model", model_file, "--fps", "8", "-o", tmp_path / "b.mp4").code == 0
    assert _probe(tmp_path / "b.mp4")[1] == 8


def test_a_video_latent_decodes_to_an_animation(tmp_path, model_file):
    clip = _clip(tmp_path / "clip.mp4", 9)
    run_cli("encode", clip, "--model", model_file, "--space", "wan21", "-o", tmp_path / "clip.safetensors")
    result = run_cli("decode", tmp_path / "clip.safetensors", "--model", model_file, "--chunk", "1", "-o", tmp_path / "a.webp")
    assert result.code == 0, result.err
    with Image.open(tmp_path / "a.webp") as im:
        assert (im.n_frames, im.size) == (9, (48, 32))


def test_a_latent_without_a_frame_rate_gets_the_default_and_a_note(tmp_path, model_file):
    from latentbridge import io

    io.save_latent(tmp_path / "z.safetensors", torch.randn(1, 16, 2, 4, 4), space="wan21", domain="model")
    result = run_cli("decode", tmp_path / "z.safetensors", "--model", model_file, "-o", tmp_path / "z.mp4")
    assert result.code == 0 and "stores no frame rate: writing 24 fps" in result.err
    assert _probe(tmp_path / "z.mp4")[:2] == (5, 24)


def test_refusals_keep_the_contract(tmp_path, model_file):
    clip = _clip(tmp_path / "clip.mp4", 5)
    run_cli("encode", clip, "--model", model_file, "--space", "wan21", "-o", tmp_path / "clip.safetensors")
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    image_model = tmp_path / "image_tae.safetensors"
    from safetensors.torch import save_file

    save_file({f"decoder.layers.{int(k.split('.', 1)[0]) - 1}.{k.split('.', 1)[1]}": v
               for k, v in layouts.build("decoder", "standard", 16).state_dict().items()}, str(image_model))
    cases = [
        (("encode", clip, "--model", model_file, "-o", tmp_path / "x.safetensors"), "--space wan21"),
        (("encode", tmp_path / "broken.mp4", "--model", model_file, "--space", "wan21", "-o", tmp_path / "x.safetensors"),
         "not a readable video"),
        (("encode", clip, "--model", model_file, "--space", "wan21", "--fps", "fast", "-o", tmp_path / "x.safetensors"),
         "not a number"),
        (("decode", tmp_path / "clip.safetensors", "--model", model_file, "-o", tmp_path / "x.png"), "write a video"),
        (("decode", tmp_path / "clip.safetensors", "--model", model_file, "--chunk", "0", "-o", tmp_path / "x.mp4"),
         "--chunk 0"),
        (("decode", tmp_path / "clip.safetensors", "--model", image_model, "-o", tmp_path / "x.mp4"),
         "needs a tiny video autoencoder"),
    ]
    for argv, match in cases:
        before = snapshot(tmp_path)
        assert_refused(run_cli(*argv), before, tmp_path, match=match)
