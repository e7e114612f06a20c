"""The learned upscaler: wiring with small random networks (any ratio in range, domains, errors, lookup)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from latentbridge import spaces, weights
from latentbridge.errors import InputError, WeightsFormatError, WeightsNotFoundError
from latentbridge.upscale import UpscalerConfig, UpscalerNet, load, upscale
from latentbridge.upscale.learned import to_tensors, weight_name

SMALL = dict(width=8, blocks=1, sub=2, sub_channels=4, head=8, head_blocks=1)


def _save(folder: Path, space: str, *, randomise: bool = True, storage: str = "float32", name: str | None = None,
          **config) -> Path:
    sp = spaces.get(space)
    net = UpscalerNet(UpscalerConfig(channels=sp.taesd_channels, **{**SMALL, **config}))
    if randomise:  # zero-initialised output layers would make every test trivially pass
        torch.manual_seed(0)
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.1)
    tensors, meta = weights.stored(*to_tensors(net, sp), storage)
    path = folder / (name or weight_name(sp))
    save_file(tensors, str(path), metadata=meta)
    return path


@pytest.fixture
def models(tmp_path, monkeypatch) -> Path:
    """An empty shipped-models folder, so tests never pick up the real shipped upscaler."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    monkeypatch.setattr(weights, "PACKAGE_MODELS", folder)
    return folder


@pytest.mark.parametrize("space", ["sd1", "flux1", "sana", "flux2"])
def test_learned_upscale_any_ratio_in_range_for_4_16_32_channels(models, space):
    _save(models, space)
    sp = spaces.get(space)
    x = torch.randn(2, sp.taesd_channels, 6, 8)
    for scale, want in ((2.0, (12, 16)), (1.5, (9, 12)), (4.0, (24, 32)), (0.5, (3, 4)), (1.25, (8, 10))):
        out = upscale(x, sp, scale, method="nn", domain="taesd")
        assert out.shape == (2, sp.taesd_channels, *want)
        assert torch.isfinite(out).all()


def test_learned_upscale_fresh_network_is_the_bilinear_resample(models):
    path = _save(models, "sd1", randomise=False)
    x = torch.randn(1, 4, 5, 7)
    out = upscale(x, "sd1", 2, method="nn", model=path)
    torch.testing.assert_close(out, upscale(x, "sd1", 2, method="bilinear"))


def test_learned_upscale_packed_domain_runs_unpacked(models):
    _save(models, "flux2")
    model = load("flux2")
    packed = torch.randn(1, 128, 4, 4)
    out = upscale(packed, "flux2", 2, method="nn", domain="model")
    want = spaces.pack(model(spaces.unpack(packed), (16, 16)))
    assert out.shape == (1, 128, 8, 8)
    torch.testing.assert_close(out, want)


def test_learned_upscale_keeps_dtype_and_input_and_folds_video_frames(models):
    _save(models, "wan21")
    x = torch.randn(1, 16, 3, 4, 4, dtype=torch.bfloat16)
    before = x.clone()
    out = upscale(x, "wan21", 2, method="nn", domain="taesd")
    assert out.shape == (1, 16, 3, 8, 8) and out.dtype == torch.bfloat16
    assert torch.equal(x, before)
    frame = load(models / "upscaler-wan21.safetensors")(x[:, :, 1].float(), (8, 8))
    torch.testing.assert_close(out[:, :, 1].float(), frame, atol=0.05, rtol=0.05)


def test_learned_upscale_same_size_returns_a_copy(models):
    _save(models, "sd1")
    x = torch.randn(1, 4, 8, 8)
    out = upscale(x, "sd1", 1.0, method="nn")
    assert torch.equal(out, x) and out is not x


def test_learned_upscale_ratio_out_of_range_says_so_and_offers_plain(models):
    _save(models, "sd1")
    x = torch.randn(1, 4, 8, 8)
    for scale in (0.75, 5.0, 0.25):
        with pytest.raises(InputError, match=r"outside the range .*\(0\.5x and 1x to 4x\).*plain method instead, e.g. bicubic"):
            upscale(x, "sd1", scale, method="nn")


def test_learned_upscale_channels_the_model_does_not_take(models, tmp_path):
    path = _save(tmp_path, "flux2")
    with pytest.raises(InputError, match=r"serves flux2 \(32-channel.*sd1 latent \(4 channels"):
        upscale(torch.randn(1, 4, 8, 8), "sd1", 2, method="nn", model=path)
    with pytest.raises(InputError, match="takes 32-channel"):
        load(path)(torch.randn(1, 16, 8, 8), (16, 16))


def test_learned_upscale_missing_model_names_the_fix(models):
    with pytest.raises(WeightsNotFoundError, match=r"no learned upscaler for sd3.*upscaler.*plain method such as bicubic"):
        upscale(torch.randn(1, 16, 8, 8), "sd3", 2, method="nn")


def test_load_finds_shipped_model_first_then_user_folders(models, tmp_path, monkeypatch):
    user = tmp_path / "user"
    user.mkdir()
    _save(user, "sd1")
    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(user))
    assert load("sd1").path == user / "upscaler-sd1.safetensors"
    _save(models, "sd1")
    assert load("sd1").path == models / "upscaler-sd1.safetensors"


def test_load_rejects_files_that_are_not_upscalers(tmp_path):
    bad = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(bad), metadata={"format": "something else"})
    with pytest.raises(WeightsFormatError, match="not a latentbridge upscaler"):
        load(bad)
    sp = spaces.get("sd1")
    tensors, meta = to_tensors(UpscalerNet(UpscalerConfig(channels=4, **SMALL)), sp)
    tensors.pop("conv_out.weight")
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(WeightsFormatError, match="missing"):
        load(bad)


def test_config_covers_trained_ranges_only():
    cfg = UpscalerConfig()
    assert cfg.covers(0.5) and cfg.covers(1.0) and cfg.covers(4.0) and cfg.covers(2.37)
    assert not cfg.covers(0.75) and not cfg.covers(4.5)
    assert cfg.describe_ranges() == "0.5x and 1x to 4x"


@pytest.mark.parametrize("storage", ["float16", "bfloat16"])
def test_a_half_precision_upscaler_file_computes_what_its_weights_rounded_to_float32_compute(models, storage):
    half = load(_save(models, "sd1", storage=storage, name="half.safetensors"))
    full = load(_save(models, "sd1", name="full.safetensors"))
    assert all(p.dtype == torch.float32 for p in half.net.parameters())
    with torch.no_grad():
        for p in full.net.parameters():
            p.copy_(p.to(weights.STORAGE_DTYPES[storage]))
    x = torch.randn(1, 4, 5, 6)
    assert torch.equal(half(x, (10, 12)), full(x, (10, 12)))


def test_learned_upscale_computes_in_the_latents_dtype_and_float16_in_float32_on_a_cpu(models):
    path = _save(models, "sd1", storage="float16")
    x = torch.randn(1, 4, 5, 6)
    out = upscale(x, "sd1", 2, method="nn", domain="taesd", model=path)
    assert out.dtype == torch.float32 and torch.equal(out, load(path)(x, (10, 12)))
    bf = upscale(x.bfloat16(), "sd1", 2, method="nn", domain="taesd", model=path)
    assert bf.dtype == torch.bfloat16
    assert torch.equal(bf, load(path, dtype=torch.bfloat16)(x.bfloat16(), (10, 12)))
    assert not torch.equal(bf.float(), load(path)(x.bfloat16().float(), (10, 12)))  # not float32 work rounded
    fp16 = upscale(x.half(), "sd1", 2, method="nn", domain="taesd", model=path)
    assert fp16.dtype == torch.float16 and torch.equal(fp16, load(path)(x.half().float(), (10, 12)).half())
