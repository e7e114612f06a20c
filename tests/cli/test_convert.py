import pytest
import torch

from latentbridge import io
from latentbridge.cli import main

from ..contract import assert_refused, run_cli, snapshot
from ..interposer.helpers import write_bridge, write_v4


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTBRIDGE_OFFLINE", "1")
    d = tmp_path / "models"
    write_bridge(d, "flux2", "sana")
    write_v4(d, "xl", "v1")
    return d


def test_convert_writes_the_target_space_with_metadata(tmp_path, capsys, models):
    src = io.save_latent(tmp_path / "in.safetensors", torch.randn(1, 128, 8, 8), space="flux2", domain="raw")
    code, out, err = run(capsys, "convert", src, "--to", "sana", "--models-dir", models, "-o", tmp_path / "out.safetensors")
    assert code == 0, err
    lf = io.load_latent(tmp_path / "out.safetensors")
    assert lf.space == "sana" and lf.domain == "raw" and lf.tensor.shape == (1, 32, 4, 4)
    assert "route: flux2 -> sana" in out and "GFLOP" in out


def test_convert_detects_the_source_when_not_given(tmp_path, capsys, models):
    src = io.save_latent(tmp_path / "in.npy", torch.randn(1, 128, 8, 8))
    code, _, err = run(capsys, "convert", src, "--to", "sana", "--models-dir", models, "-o", tmp_path / "o.npy")
    assert code == 0, err
    assert io.load_latent(tmp_path / "o.npy").tensor.shape == (1, 32, 4, 4)


def test_convert_refuses_an_ambiguous_source_with_the_reason(tmp_path, capsys, models):
    src = io.save_latent(tmp_path / "in.npy", torch.randn(1, 4, 16, 16) * 6.5)
    code, _, err = run(capsys, "convert", src, "--to", "v1", "--models-dir", models, "-o", tmp_path / "o.npy")
    assert code == 2 and "cannot tell" in err and "--from SPACE" in err
    assert not (tmp_path / "o.npy").exists()
    code, _, err = run(capsys, "convert", src, "--from", "xl", "--to", "v1", "--models-dir", models, "-o", tmp_path / "o.npy")
    assert code == 0, err


@pytest.mark.parametrize("scale", [5, 6.5, 8])
def test_an_unlabelled_sdxl_like_file_is_never_converted_to_sd1_as_a_no_op(tmp_path, models, scale):
    src = io.save_latent(tmp_path / "in.npy", torch.randn(1, 4, 32, 32) * scale)
    before = snapshot(tmp_path)
    result = run_cli("convert", src, "--to", "sd1", "--models-dir", models, "-o", tmp_path / "o.npy")
    assert_refused(result, before, tmp_path, match="--from SPACE")
    assert "sd1 (raw" in result.err and "sdxl (raw" in result.err


def test_convert_dry_run_prints_the_route_and_writes_nothing(tmp_path, capsys, models):
    src = io.save_latent(tmp_path / "in.safetensors", torch.randn(1, 4, 8, 8), space="sdxl", domain="raw")
    code, out, _ = run(capsys, "convert", src, "--to", "sd1", "--models-dir", models, "--dry-run")
    assert code == 0 and "sdxl -> sd1" in out and "v4" in out


@pytest.mark.parametrize("argv, message", [
    (["--to", "sanaa"], "did you mean"),
    (["--to", "sd3"], "Possible conversions"),
    (["--from", "sdxl", "--to", "sd1"], "128-channel"),
])
def test_convert_bad_requests_exit_2_and_write_nothing(tmp_path, capsys, models, argv, message):
    src = io.save_latent(tmp_path / "in.safetensors", torch.randn(1, 128, 8, 8))
    code, _, err = run(capsys, "convert", src, *argv, "--models-dir", models, "-o", tmp_path / "o.safetensors")
    assert code == 2 and err.startswith("error:") and message in err
    assert not (tmp_path / "o.safetensors").exists()


def test_convert_nan_latent_is_refused(tmp_path, capsys, models):
    x = torch.randn(1, 128, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    from safetensors.torch import save_file

    save_file({"latent": x}, str(tmp_path / "in.safetensors"))
    code, _, err = run(capsys, "convert", tmp_path / "in.safetensors", "--from", "flux2", "--to", "sana",
                       "--models-dir", models, "-o", tmp_path / "o.safetensors")
    assert code == 2 and "NaN" in err and not (tmp_path / "o.safetensors").exists()


def test_demo_converts_the_bundled_latents_and_draws_them(tmp_path, monkeypatch):
    from latentbridge.cli import convert as convert_cli
    from latentbridge.demo_data import DemoContext

    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(tmp_path / "models"))
    write_bridge(tmp_path / "models", "flux2", "sana")
    write_bridge(tmp_path / "models", "sana", "flux2")
    latent = io.LatentFile(torch.randn(1, 128, 8, 8), space="flux2", domain="raw")
    ctx = DemoContext(["a"], torch.rand(1, 3, 128, 128), {"a": latent})
    (tmp_path / "out").mkdir()
    lines = convert_cli.demo(tmp_path / "out", ctx)
    assert "flux2 (1, 128, 8, 8) -> sana (1, 32, 4, 4)" in lines[1]
    picture = io.load_image(tmp_path / "out" / "convert.png")
    assert picture.shape[-2] >= 128 and picture.shape[-1] >= 3 * 128
