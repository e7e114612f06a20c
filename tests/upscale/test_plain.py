"""Plain resampling: exact shapes for every space, domain and method; packing; dtype; no in-place edits."""

from __future__ import annotations

import pytest
import torch

from latentbridge import spaces
from latentbridge.errors import InputError
from latentbridge.upscale import PLAIN_METHODS, resample, target_size, upscale

SPACES = [s.id for s in spaces.all()]


def _latent(sp: spaces.LatentSpace, domain: str, h: int = 6, w: int = 10, batch: int = 2) -> torch.Tensor:
    c = sp.channels_in(domain)
    return torch.randn(batch, c, *((3,) if sp.ndim == 5 else ()), h, w)


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("domain", spaces.DOMAINS)
def test_upscale_exact_shape_every_space_and_domain(space, domain):
    sp = spaces.get(space)
    x = _latent(sp, domain)
    for scale, want in ((2.0, (12, 20)), (1.5, (9, 15)), (0.5, (3, 5)), (3.3, (20, 33))):
        out = upscale(x, sp, scale, method="bicubic", domain=domain)
        assert out.shape == (*x.shape[:-2], *want)
        assert out.dtype == x.dtype


@pytest.mark.parametrize("method", list(PLAIN_METHODS))
def test_resample_every_method_any_ratio(method):
    x = torch.randn(1, 4, 7, 9)
    for size in ((14, 18), (11, 13), (3, 4), (7, 9), (29, 5)):
        assert resample(x, size, method).shape == (1, 4, *size)


def test_target_size_rounds_like_comfyui_and_accepts_pairs_and_sizes():
    assert target_size((64, 96), 1.5) == (96, 144)
    assert target_size((5, 7), 1.5) == (8, 10)  # round half to even, as Python's round
    assert target_size((64, 96), (2.0, 0.5)) == (128, 48)
    assert target_size((64, 96), size=(10, 20)) == (10, 20)
    assert target_size((1, 1), 0.1) == (1, 1)
    for bad in ((0.0,), -1.0, float("nan"), (1.0, 2.0, 3.0)):
        with pytest.raises(InputError):
            target_size((4, 4), bad)
    with pytest.raises(InputError, match="either scale= or size="):
        target_size((4, 4), 2.0, (8, 8))


def test_upscale_flux2_packed_domain_resamples_unpacked():
    sp = spaces.get("flux2")
    packed = torch.randn(1, 128, 4, 6)
    out = upscale(packed, sp, 1.5, method="bilinear", domain="model")
    want = spaces.pack(resample(spaces.unpack(packed), (12, 18), "bilinear"))
    assert out.shape == (1, 128, 6, 9)
    torch.testing.assert_close(out, want)
    # resampling the packed channels directly is a different (wrong) answer
    assert not torch.allclose(out, resample(packed, (6, 9), "bilinear"))


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "area", "antialias"])
def test_upscale_commutes_with_affine_domain_maps(method):
    sp = spaces.get("flux1")  # has both a shift and a scale
    raw = torch.randn(1, 16, 8, 8) * 2 + 0.3
    via_raw = upscale(raw, sp, 1.75, method=method, domain="raw")
    via_model = upscale(sp.to_model(raw), sp, 1.75, method=method, domain="model")
    torch.testing.assert_close(sp.to_model(via_raw), via_model, rtol=1e-4, atol=1e-4)


def test_upscale_video_latent_resamples_frames_independently():
    sp = spaces.get("wan21")
    x = torch.randn(1, 16, 3, 4, 4)
    out = upscale(x, sp, 2, method="bicubic", domain="raw")
    assert out.shape == (1, 16, 3, 8, 8)
    torch.testing.assert_close(out[:, :, 1], resample(x[:, :, 1], (8, 8), "bicubic"))


def test_upscale_frames_resamples_the_frame_axis_keeping_first_last_and_originals():
    x = torch.randn(2, 16, 5, 4, 6)  # T=5 differs from C=16
    before = x.clone()
    double = upscale(x, "wan21", 2, method="bicubic", domain="model", frames=9)
    assert double.shape == (2, 16, 9, 8, 12)
    spatial = upscale(x, "wan21", 2, method="bicubic", domain="model")
    torch.testing.assert_close(double[:, :, ::2], spatial)  # 2T - 1: every original frame kept
    torch.testing.assert_close(double[:, :, 1], (spatial[:, :, 0] + spatial[:, :, 1]) / 2)
    torch.testing.assert_close(upscale(x, "wan21", 1, method="bilinear", frames=3)[:, :, 1], x[:, :, 2])
    nearest = upscale(x, "wan21", 1, method="nearest", frames=10)
    assert all(any(torch.equal(f, x[:, :, t]) for t in range(5)) for f in nearest.unbind(2))
    assert torch.equal(x, before)


def test_upscale_frames_commutes_with_the_domain_maps_and_keeps_dtype():
    sp = spaces.get("wan21")
    raw = torch.randn(1, 16, 4, 4, 4, dtype=torch.bfloat16) * 2
    via_raw = upscale(raw, sp, 1, method="bilinear", domain="raw", frames=7)
    via_model = upscale(sp.to_model(raw.float()), sp, 1, method="bilinear", domain="model", frames=7)
    assert via_raw.dtype == torch.bfloat16 and via_raw.shape == (1, 16, 7, 4, 4)
    torch.testing.assert_close(sp.to_model(via_raw.float()), via_model, rtol=0.02, atol=0.05)


def test_upscale_frames_refuses_image_latents_and_bad_counts():
    with pytest.raises(InputError, match=r"\(B, C, T, H, W\)"):
        upscale(torch.randn(1, 4, 4, 4), "sd1", 2, method="bicubic", frames=3)
    for bad in (0, -1, 2.5):
        with pytest.raises(InputError, match="whole number"):
            upscale(torch.randn(1, 16, 3, 4, 4), "wan21", 2, method="bicubic", frames=bad)


def test_upscale_of_the_real_wan_latent_keeps_its_16_frames(wan_latent):
    out = upscale(wan_latent, "wan21", 2, method="bicubic", domain="model")
    assert out.shape == (1, 16, 16, 80, 128) and out.dtype == wan_latent.dtype


def test_antialias_downscale_removes_aliasing_that_nearest_keeps():
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2).float()[None, None].repeat(1, 4, 1, 1)
    smooth = resample(checker, (5, 5), "antialias")
    aliased = resample(checker, (5, 5), "nearest")
    assert float(smooth.std()) < 0.1 < float(aliased.std())


def test_upscale_keeps_dtype_and_leaves_input_untouched():
    x = torch.randn(1, 4, 5, 5, dtype=torch.bfloat16)
    before = x.clone()
    out = upscale(x, "sd1", 2, method="bicubic", domain="raw")
    assert out.dtype == torch.bfloat16 and out.shape == (1, 4, 10, 10)
    assert torch.equal(x, before)
    same = upscale(x, "sd1", 1, method="nearest", domain="raw")
    assert torch.equal(same, x) and same is not x


def test_upscale_nearest_2x_repeats_pixels():
    x = torch.randn(1, 4, 3, 3)
    torch.testing.assert_close(upscale(x, "sd1", 2, method="nearest", domain="raw"),
                               x.repeat_interleave(2, -1).repeat_interleave(2, -2))


def test_upscale_bad_method_channels_and_domain_are_clear_errors():
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(InputError, match="unknown upscale method"):
        upscale(x, "sd1", 2, method="lanczos3")
    with pytest.raises(InputError, match="C=16"):
        upscale(x, "flux1", 2, method="bicubic")
    with pytest.raises(InputError, match="unknown domain"):
        upscale(x, "sd1", 2, method="bicubic", domain="pixels")


def test_resample_latent_is_a_deprecated_name_of_plain_upscale():
    x = torch.randn(1, 4, 8, 8)
    with pytest.warns(DeprecationWarning, match="upscale"):
        from latentbridge.upscale import resample_latent
    assert torch.equal(resample_latent(x, "sd1", 2), upscale(x, "sd1", 2, method="bicubic"))
    assert torch.equal(resample_latent(x, "sd1", 2, method="area"), upscale(x, "sd1", 2, method="area"))
