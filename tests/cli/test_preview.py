import pytest
import torch
from PIL import Image

from latentbridge import io, spaces
from latentbridge.cli import main
from latentbridge.preview import load_factors


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_preview_writes_a_grid_of_a_batch(tmp_path, capsys):
    path = io.save_latent(tmp_path / "a.safetensors", torch.randn(3, 128, 8, 8), space="flux2", domain="model")
    code, out, _ = run(capsys, "preview", path, "--method", "linear", "-o", tmp_path / "p.png")
    assert code == 0 and "grid of 3" in out
    with Image.open(tmp_path / "p.png") as im:
        assert im.size[0] > 16 * 2


def test_preview_size_and_factors_file(tmp_path, capsys):
    from latentbridge.preview import fit_factors, save_factors

    fitted = fit_factors([(torch.randn(2, 4, 8, 8), torch.rand(2, 3, 64, 64))])
    factors = save_factors(tmp_path / "f.safetensors", fitted, space="sd1", default="affine")
    path = io.save_latent(tmp_path / "a.npy", torch.randn(1, 4, 8, 12))
    code, out, _ = run(capsys, "preview", path, "--space", "sd1", "--domain", "model", "--factors", factors,
                       "--size", "96", "-o", tmp_path / "p.png")
    assert code == 0 and "sd1 linear" in out
    with Image.open(tmp_path / "p.png") as im:
        assert im.size == (96, 64)


@pytest.mark.parametrize("size, scale", [(16, 1), (32, 2)])
def test_preview_size_runs_the_preview_ladder_rung_nearest_it(tmp_path, capsys, preview_rungs, size, scale):
    import numpy as np

    from latentbridge.preview import preview

    paths = {s: preview_rungs("flux2", s) for s in (1, 2)}
    x = torch.randn(1, 128, 8, 6)  # 16 x 12 at /8, 32 x 24 at /4
    path = io.save_latent(tmp_path / "a.safetensors", x, space="flux2", domain="model")
    code, out, _ = run(capsys, "preview", path, "--size", size, "-o", tmp_path / "p.png")
    assert code == 0 and "flux2 neural" in out
    want = preview(x, "flux2", method="neural", previewer=paths[scale])[0]
    with Image.open(tmp_path / "p.png") as im:
        got = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float() / 255
    assert got.shape == want.shape and (got - want).abs().max() <= 0.5 / 255 + 1e-6


def test_preview_animate_turns_files_into_frames(tmp_path, capsys):
    paths = [io.save_latent(tmp_path / f"{i}.safetensors", torch.randn(1, 16, 8, 8), space="sd3", domain="model")
             for i in range(3)]
    code, out, _ = run(capsys, "preview", *paths, "--animate", "--method", "linear", "-o", tmp_path / "a.webp")
    assert code == 0 and "3-frame animation" in out
    with Image.open(tmp_path / "a.webp") as im:
        assert im.n_frames == 3


def test_preview_nan_latent_is_shown_with_a_marker(tmp_path, capsys):
    x = torch.randn(1, 16, 8, 8)
    x[0, :, 2, 3] = float("nan")
    path = tmp_path / "a.safetensors"
    from safetensors.torch import save_file

    save_file({"latent": x}, str(path), metadata={"latentbridge.space": "flux1", "latentbridge.domain": "model"})
    code, _, err = run(capsys, "preview", path, "--method", "linear", "-o", tmp_path / "p.png")
    assert code == 0 and "magenta" in err
    with Image.open(tmp_path / "p.png") as im:
        assert im.getpixel((3, 2)) == (255, 0, 255)


@pytest.mark.parametrize("argv, message", [
    (["--space", "flux2"], "4-channel"),
    (["--space", "sd1", "--animate"], "--animate writes .webp"),
])
def test_preview_bad_input_exits_2_without_output(tmp_path, capsys, argv, message):
    path = io.save_latent(tmp_path / "a.npy", torch.randn(1, 4, 8, 8))
    code, _, err = run(capsys, "preview", path, *argv, "-o", tmp_path / "p.png")
    assert code == 2 and err.startswith("error:") and message in err
    assert not (tmp_path / "p.png").exists()


def test_preview_factors_of_the_wrong_shape_exit_2(tmp_path, capsys):
    from latentbridge.preview import fit_factors, save_factors

    fitted = fit_factors([(torch.randn(2, 16, 8, 8), torch.rand(2, 3, 64, 64))], forms=("affine",))
    factors = save_factors(tmp_path / "f.safetensors", fitted, space="sd3", default="affine")
    path = io.save_latent(tmp_path / "a.npy", torch.randn(1, 4, 8, 8))
    code, _, err = run(capsys, "preview", path, "--space", "sd1", "--factors", factors, "-o", tmp_path / "p.png")
    assert code == 2 and "take 16-channel" in err and not (tmp_path / "p.png").exists()


def test_preview_unwritable_output_exits_2(tmp_path, capsys):
    path = io.save_latent(tmp_path / "a.npy", torch.randn(1, 4, 8, 8))
    code, _, err = run(capsys, "preview", path, "--space", "sd1", "-o", tmp_path / "missing" / "p.png")
    assert code == 2 and "does not exist" in err


def _photos(folder, n=8, size=64):
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        base = torch.rand(3, 1, 1, generator=g)
        img = (base * 0.6 + 0.4 * torch.rand(3, size, size, generator=g)).clamp(0, 1)
        io.save_image(folder / f"img_{i}.png", img)


def test_fit_preview_from_latent_files_prints_held_out_psnr(tmp_path, capsys):
    _photos(tmp_path / "images")
    lat = []
    for i in range(8):
        img = io.load_image(tmp_path / "images" / f"img_{i}.png")
        pooled = torch.nn.functional.avg_pool2d(img * 2 - 1, 8)
        latent = torch.cat([pooled, pooled.mean(1, keepdim=True)], 1) * 0.5  # a linear "encoder"
        lat.append(io.save_latent(tmp_path / f"img_{i}.safetensors", latent, space="sd1", domain="model"))
    out_path = tmp_path / "f.safetensors"
    code, out, _ = run(capsys, "fit-preview", "--images", tmp_path / "images", "--latents", *lat, "--size", "64",
                       "-o", out_path)
    assert code == 0 and "held out 2" in out and "fitted affine" in out and "built-in" in out
    f = load_factors(out_path)
    assert f.space == "sd1" and f.channels == 4
    assert float(out.split("fitted affine")[1].split()[0]) > 40  # the map is exactly affine


def test_fit_preview_needs_an_encoder_or_latents(tmp_path, capsys):
    _photos(tmp_path / "images", n=2)
    code, _, err = run(capsys, "fit-preview", "--images", tmp_path / "images", "-o", tmp_path / "f.safetensors")
    assert code == 2 and "--encoder" in err


def test_demo_section_runs_on_the_bundled_examples(tmp_path):
    from latentbridge import demo_data
    from latentbridge.cli import preview as cli_preview

    ctx = demo_data.load()
    ctx.latents["extra"] = io.LatentFile(torch.randn(1, 128, 4, 4), "flux2", "model")
    lines = cli_preview.demo(tmp_path, ctx)
    assert any("extra" in line for line in lines)
    assert (tmp_path / "preview-extra.png").is_file()
    assert spaces.get("flux2")


def test_fit_preview_through_a_diffusers_vae_folder(tmp_path, capsys):
    diffusers = pytest.importorskip("diffusers")
    vae = diffusers.AutoencoderKL(block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4,
                                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                  scaling_factor=0.18215)
    vae.save_pretrained(tmp_path / "vae")
    _photos(tmp_path / "images", n=4, size=32)
    code, out, _ = run(capsys, "fit-preview", "--encoder", f"diffusers:{tmp_path / 'vae'}", "--images",
                       tmp_path / "images", "--size", "32", "-o", tmp_path / "f.safetensors")
    assert code == 0 and "sd1: fitted on 3 images, held out 1" in out
    assert load_factors(tmp_path / "f.safetensors").channels == 4


def test_fit_preview_with_the_real_taef2_encoder_fits_packed_factors(tmp_path, capsys, photos, monkeypatch):
    from tests.conftest import SHARED_WEIGHTS, shared_file

    shared_file("taef2_encoder.pth")
    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(SHARED_WEIGHTS))
    (tmp_path / "images").mkdir()
    for p in photos[:6]:
        (tmp_path / "images" / p.name).symlink_to(p)
    code, out, _ = run(capsys, "fit-preview", "--encoder", "taef2", "--images", tmp_path / "images", "--size", "128",
                       "-o", tmp_path / "f.safetensors")
    assert code == 0 and "flux2" in out and "built-in" in out
    f = load_factors(tmp_path / "f.safetensors", form="affine")
    assert f.patch == 2 and f.channels == 32


def test_preview_files_of_different_shapes_share_one_grid(tmp_path, capsys):
    a = io.save_latent(tmp_path / "a.safetensors", torch.randn(1, 16, 8, 8), space="sd3", domain="model")
    b = io.save_latent(tmp_path / "b.safetensors", torch.randn(1, 16, 4, 8), space="sd3", domain="model")
    code, out, _ = run(capsys, "preview", a, b, "--method", "linear", "-o", tmp_path / "p.png")
    assert code == 0 and "grid of 2" in out


def _frames(path):
    with Image.open(path) as im:
        return im.n_frames, im.size


def test_preview_of_a_video_latent_writes_one_animation_per_batch_item(tmp_path):
    from tests.contract import run_cli

    x = torch.randn(2, 16, 5, 4, 6)  # 2 clips of 5 latent frames; T differs from C
    path = io.save_latent(tmp_path / "v.safetensors", x, space="wan21", domain="model")
    result = run_cli("preview", path, "--method", "linear", "--size", "48", "-o", tmp_path / "v.webp")
    assert result.code == 0, result.err
    assert _frames(tmp_path / "v-0.webp") == (5, (48, 32)) and _frames(tmp_path / "v-1.webp") == (5, (48, 32))
    assert not (tmp_path / "v.webp").exists() and "5-frame animation" in result.out


def test_preview_of_a_one_frame_video_latent_is_a_picture(tmp_path):
    from tests.contract import run_cli

    path = io.save_latent(tmp_path / "q.safetensors", torch.randn(1, 16, 1, 4, 6), space="wan21", domain="model")
    result = run_cli("preview", path, "--method", "linear", "-o", tmp_path / "q.png")
    assert result.code == 0, result.err
    with Image.open(tmp_path / "q.png") as im:
        assert im.size == (6, 4)


def test_preview_of_a_video_latent_refuses_a_still_picture_output(tmp_path):
    from tests.contract import assert_refused, run_cli, snapshot

    path = io.save_latent(tmp_path / "v.safetensors", torch.randn(1, 16, 3, 4, 4), space="wan21", domain="model")
    before = snapshot(tmp_path)
    assert_refused(run_cli("preview", path, "-o", tmp_path / "v.png"), before, tmp_path, match=".webp or .gif")
    still = io.save_latent(tmp_path / "s.safetensors", torch.randn(1, 16, 4, 4), space="sd3", domain="model")
    before = snapshot(tmp_path)
    assert_refused(run_cli("preview", path, still, "-o", tmp_path / "v.webp"), before, tmp_path, match="separately")


def test_preview_of_the_real_wan_latent_writes_a_16_frame_webp(tmp_path, wan_latent):
    from tests.contract import run_cli

    path = io.save_latent(tmp_path / "wan.latent", wan_latent.float(), space="wan21", domain="model")
    result = run_cli("preview", path, "--method", "linear", "-o", tmp_path / "wan.webp")
    assert result.code == 0, result.err
    assert _frames(tmp_path / "wan.webp") == (16, (64, 40))
