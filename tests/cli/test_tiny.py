from pathlib import Path

import pytest
import torch

from latentbridge import io, tiny
from latentbridge.cli import main

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_tiny_cache")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err




def _images(folder: Path, *sizes: tuple[int, int]) -> list[Path]:
    paths = []
    for i, (h, w) in enumerate(sizes):
        paths.append(io.save_image(folder / f"im{i}.png", torch.rand(1, 3, h, w)))
    return paths


def test_encode_then_decode_writes_numbered_files(tmp_path, capsys, model_file):
    imgs = _images(tmp_path, (16, 24), (16, 24))
    code, out, _ = run(capsys, "encode", *imgs, "--model", model_file, "-o", tmp_path / "z.safetensors")
    assert code == 0 and "(2, 4, 2, 3)" in out
    lf = io.load_latent(tmp_path / "z.safetensors")
    assert (lf.space, lf.domain, tuple(lf.tensor.shape)) == ("sd1", "taesd", (2, 4, 2, 3))
    code, out, _ = run(capsys, "decode", tmp_path / "z.safetensors", "--model", model_file, "-o", tmp_path / "d.png")
    assert code == 0
    assert [p.name for p in sorted(tmp_path.glob("d_*.png"))] == ["d_000.png", "d_001.png"]
    assert io.load_image(tmp_path / "d_001.png").shape == (1, 3, 16, 24)


def test_decode_grid_writes_one_picture(tmp_path, capsys, model_file):
    path = io.save_latent(tmp_path / "z.safetensors", torch.randn(3, 4, 2, 2), space="sd1", domain="taesd")
    code, _, _ = run(capsys, "decode", path, "--model", model_file, "--grid", "-o", tmp_path / "g.png")
    assert code == 0 and (tmp_path / "g.png").is_file() and not list(tmp_path.glob("g_*.png"))


def test_encode_raw_domain_round_trips_through_decode(tmp_path, capsys, model_file):
    imgs = _images(tmp_path, (16, 16))
    run(capsys, "encode", *imgs, "--model", model_file, "--domain", "raw", "-o", tmp_path / "z.latent")
    lf = io.load_latent(tmp_path / "z.latent")
    assert lf.domain == "raw"
    m = tiny.load(model_file)
    torch.testing.assert_close(lf.tensor, m.encode(io.load_image(imgs[0]), domain="raw"))
    code, _, _ = run(capsys, "decode", tmp_path / "z.latent", "--space", "sd1", "--model", model_file, "--tile", "1",
                     "-o", tmp_path / "d.png")
    assert code == 0


def test_encode_images_of_different_sizes_is_refused(tmp_path, capsys, model_file):
    imgs = _images(tmp_path, (16, 16), (24, 16))
    code, _, err = run(capsys, "encode", *imgs, "--model", model_file, "-o", tmp_path / "z.safetensors")
    assert code == 2 and "differ in size" in err and not (tmp_path / "z.safetensors").exists()


def test_encode_size_not_a_multiple_needs_fit(tmp_path, capsys, model_file):
    imgs = _images(tmp_path, (20, 16))
    code, _, err = run(capsys, "encode", *imgs, "--model", model_file, "-o", tmp_path / "z.safetensors")
    assert code == 2 and "--fit pad" in err and not (tmp_path / "z.safetensors").exists()
    code, out, _ = run(capsys, "encode", *imgs, "--model", model_file, "--fit", "pad", "-o", tmp_path / "z.safetensors")
    assert code == 0 and "(1, 4, 3, 2)" in out


def test_decode_with_a_model_of_another_channel_count_is_refused(tmp_path, capsys, model_file):
    path = io.save_latent(tmp_path / "z.safetensors", torch.randn(1, 16, 2, 2), space="sd3", domain="taesd")
    code, _, err = run(capsys, "decode", path, "--model", model_file, "-o", tmp_path / "d.png")
    assert code == 2 and "error:" in err and not (tmp_path / "d.png").exists()


def test_decode_without_weights_says_where_it_looked(tmp_path, capsys):
    path = io.save_latent(tmp_path / "z.safetensors", torch.randn(1, 4, 2, 2), space="sdxl", domain="model")
    code, _, err = run(capsys, "decode", path, "-o", tmp_path / "d.png", "--models-dir", tmp_path)
    assert code == 2 and "taesdxl" in err and "Looked in" in err


def test_decode_refuses_to_overwrite(tmp_path, capsys, model_file):
    path = io.save_latent(tmp_path / "z.safetensors", torch.randn(1, 4, 2, 2), space="sd1", domain="taesd")
    (tmp_path / "d.png").write_bytes(b"keep")
    code, _, err = run(capsys, "decode", path, "--model", model_file, "-o", tmp_path / "d.png")
    assert code == 2 and "exists" in err and (tmp_path / "d.png").read_bytes() == b"keep"


def test_demo_section_round_trips_the_examples(tmp_path, monkeypatch):
    from tests.conftest import SHARED_WEIGHTS, shared_file

    from latentbridge import demo_data
    from latentbridge.cli import tiny as tiny_cli

    shared_file("taef2_encoder.pth")
    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(SHARED_WEIGHTS))
    ctx = demo_data.load()
    ctx.images = ctx.images[:2, :, :64, :64]
    lines = tiny_cli.demo(tmp_path, ctx)
    assert (tmp_path / "tiny.png").is_file()
    assert any(line.startswith("taef2:") and "PSNR" in line for line in lines)
    assert any(line.startswith("taesana: only the encoder") for line in lines)
