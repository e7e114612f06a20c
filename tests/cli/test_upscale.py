"""``latentbridge upscale``: scale or pixel size, plain or learned, ComfyUI extras, clear errors with nothing written."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from latentbridge import io, spaces, weights
from latentbridge.cli import main
from latentbridge.upscale import UpscalerConfig, UpscalerNet
from latentbridge.upscale.learned import to_tensors


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def flux2_file(tmp_path):
    return io.save_latent(tmp_path / "in.safetensors", torch.randn(1, 128, 4, 6), space="flux2", domain="raw")


@pytest.fixture
def upscaler(tmp_path, monkeypatch):
    folder = tmp_path / "shipped"
    folder.mkdir()
    monkeypatch.setattr(weights, "PACKAGE_MODELS", folder)
    net = UpscalerNet(UpscalerConfig(channels=32, width=8, blocks=1, sub=2, sub_channels=4, head=8))
    tensors, meta = to_tensors(net, spaces.get("flux2"))
    save_file(tensors, str(folder / "upscaler-flux2.safetensors"), metadata=meta)
    return folder / "upscaler-flux2.safetensors"


def test_upscale_cli_scale_with_plain_method(flux2_file, tmp_path, capsys):
    code, out, _ = run(capsys, "upscale", flux2_file, "--scale", 2, "--method", "bicubic", "-o", tmp_path / "o.safetensors")
    assert code == 0 and "bicubic" in out
    lf = io.load_latent(tmp_path / "o.safetensors")
    assert lf.tensor.shape == (1, 128, 8, 12) and (lf.space, lf.domain) == ("flux2", "raw")


def test_upscale_cli_learned_by_default(flux2_file, upscaler, tmp_path, capsys):
    code, out, _ = run(capsys, "upscale", flux2_file, "--scale", 1.5, "-o", tmp_path / "o.safetensors")
    assert code == 0 and " nn " in out
    assert io.load_latent(tmp_path / "o.safetensors").tensor.shape == (1, 128, 6, 9)


def test_upscale_cli_width_height_in_pixels(flux2_file, tmp_path, capsys):
    out = tmp_path / "o.safetensors"
    assert run(capsys, "upscale", flux2_file, "--width", 192, "--height", 128, "--method", "area", "-o", out)[0] == 0
    assert io.load_latent(out).tensor.shape == (1, 128, 8, 12)
    out2 = tmp_path / "o2.safetensors"
    assert run(capsys, "upscale", flux2_file, "--width", 192, "--method", "bilinear", "-o", out2)[0] == 0
    assert io.load_latent(out2).tensor.shape == (1, 128, 8, 12)  # height follows the aspect ratio


def test_upscale_cli_comfyui_file_keeps_mask_and_batch_index(tmp_path, capsys):
    src = io.save_latent(tmp_path / "in.latent", torch.randn(2, 4, 8, 8), space="sd1", domain="raw",
                         extras={"noise_mask": torch.rand(2, 1, 64, 64), "batch_index": torch.tensor([5, 6])})
    out = tmp_path / "out.latent"
    assert run(capsys, "upscale", src, "--scale", 2, "--method", "bicubic", "-o", out)[0] == 0
    lf = io.load_latent(out)
    assert lf.tensor.shape == (2, 4, 16, 16)
    assert lf.extras["noise_mask"].shape == (2, 1, 128, 128)
    assert lf.extras["batch_index"].tolist() == [5, 6]


@pytest.mark.parametrize(("argv", "message"), [
    (["--scale", 0.75], "outside the range"),
    (["--scale", 2, "--width", 64], "either --scale or --width"),
    (["--width", 100], "--width 100 is not a positive multiple of flux2's 16-pixel latent cells"),
    ([], "--scale X, or --width/--height"),
    (["--scale", 2, "--method", "nn", "--space", "sd1"], "C=4"),
])
def test_upscale_cli_bad_input_exits_2_and_writes_nothing(flux2_file, upscaler, tmp_path, capsys, argv, message):
    out = tmp_path / "o.safetensors"
    code, _, err = run(capsys, "upscale", flux2_file, *argv, "-o", out)
    assert code == 2 and err.startswith("error:") and message in err
    assert not out.exists()


def test_upscale_cli_latent_of_another_space_than_the_model(tmp_path, upscaler, capsys):
    src = io.save_latent(tmp_path / "sd1.safetensors", torch.randn(1, 4, 8, 8), space="sd1", domain="raw")
    out = tmp_path / "o.safetensors"
    code, _, err = run(capsys, "upscale", src, "--scale", 2, "--model", upscaler, "-o", out)
    assert code == 2 and "serves flux2 (32-channel" in err and not out.exists()


def test_upscale_cli_mismatched_mask_writes_nothing(tmp_path, capsys):
    src = io.save_latent(tmp_path / "in.latent", torch.randn(1, 4, 8, 8), space="sd1", domain="raw",
                         extras={"noise_mask": torch.rand(1, 1, 30, 30)})
    out = tmp_path / "out.latent"
    code, _, err = run(capsys, "upscale", src, "--scale", 2, "--method", "bicubic", "-o", out)
    assert code == 2 and "noise_mask is 30x30" in err and not out.exists()


def test_upscale_demo_writes_a_picture_of_the_methods(tmp_path, upscaler):
    from latentbridge import demo_data
    from latentbridge.cli import upscale as cli_upscale

    ctx = demo_data.DemoContext(["a"], torch.rand(1, 3, 64, 64),
                                {"a": io.LatentFile(torch.randn(1, 128, 4, 4), "flux2", "raw")})
    lines = cli_upscale.demo(tmp_path, ctx)
    assert (tmp_path / "upscale.png").is_file() and "nearest | bicubic | nn" in lines[0] and "nn " in lines[1]
    lines = cli_upscale.demo(tmp_path, demo_data.DemoContext(["a"], torch.rand(1, 3, 64, 64)))
    assert "pixel space" in lines[0]


def test_upscale_of_a_video_latent_resizes_each_frame_and_resamples_frames_on_request(tmp_path, capsys):
    path = io.save_latent(tmp_path / "v.latent", torch.randn(1, 16, 3, 4, 6), space="wan21", domain="raw")
    code, out, err = run(capsys, "upscale", path, "--scale", "2", "--method", "bicubic", "--frames", "5",
                         "-o", tmp_path / "up.latent")
    assert code == 0, err
    assert "(1, 16, 3, 4, 6) -> (1, 16, 5, 8, 12)" in out
    lf = io.load_latent(tmp_path / "up.latent")
    assert lf.tensor.shape == (1, 16, 5, 8, 12) and lf.space == "wan21"
