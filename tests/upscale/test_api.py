"""ComfyUI LATENT dicts: extra keys kept, noise_mask resized to match, bad masks refused."""

from __future__ import annotations

import pytest
import torch

from latentbridge.errors import InputError
from latentbridge.upscale import upscale_samples


def _samples(**extra) -> dict:
    return {"samples": torch.randn(2, 4, 8, 12), **extra}


def test_upscale_samples_keeps_extra_keys_and_batch_index():
    index = [3, 4]
    src = _samples(batch_index=index, custom="kept")
    out = upscale_samples(src, "sd1", 1.5, method="bicubic")
    assert out["samples"].shape == (2, 4, 12, 18)
    assert out["batch_index"] is index and out["custom"] == "kept"
    assert src["samples"].shape == (2, 4, 8, 12)  # the caller's dict is not modified


@pytest.mark.parametrize(("mask_shape", "want"), [
    ((2, 1, 8, 12), (2, 1, 16, 24)),  # latent resolution
    ((2, 1, 64, 96), (2, 1, 128, 192)),  # image resolution (x8)
    ((1, 64, 96), (1, 128, 192)),
    ((8, 12), (16, 24)),
])
def test_upscale_samples_resizes_noise_mask_at_its_resolution(mask_shape, want):
    mask = torch.rand(mask_shape)
    out = upscale_samples(_samples(noise_mask=mask), "sd1", 2, method="nearest")
    assert out["noise_mask"].shape == want
    assert 0.0 <= float(out["noise_mask"].min()) and float(out["noise_mask"].max()) <= 1.0


def test_upscale_samples_mask_follows_target_size_and_downscale():
    mask = torch.ones(1, 1, 64, 96)
    out = upscale_samples(_samples(noise_mask=mask), "sd1", size=(4, 6), method="area")
    assert out["samples"].shape[-2:] == (4, 6) and out["noise_mask"].shape == (1, 1, 32, 48)
    torch.testing.assert_close(out["noise_mask"], torch.ones(1, 1, 32, 48))


def test_upscale_samples_flux2_mask_uses_the_packed_downscale():
    samples = {"samples": torch.randn(1, 128, 4, 4), "noise_mask": torch.rand(1, 1, 64, 64)}
    out = upscale_samples(samples, "flux2", 2, method="bilinear", domain="raw")
    assert out["samples"].shape == (1, 128, 8, 8) and out["noise_mask"].shape == (1, 1, 128, 128)


def test_upscale_samples_mismatched_mask_is_a_clear_error():
    with pytest.raises(InputError, match=r"noise_mask is 10x10 .* 8x12 \(latent pixels\) or 64x96"):
        upscale_samples(_samples(noise_mask=torch.rand(1, 1, 10, 10)), "sd1", 2, method="bicubic")
    with pytest.raises(InputError, match="'samples' tensor"):
        upscale_samples({"noise_mask": torch.rand(1, 1, 8, 8)}, "sd1", 2, method="bicubic")


def test_upscale_samples_resamples_video_frames_and_refuses_them_with_a_noise_mask():
    video = {"samples": torch.randn(1, 16, 3, 4, 4), "batch_index": [0]}
    out = upscale_samples(video, "wan21", 2, method="bilinear", frames=5)
    assert out["samples"].shape == (1, 16, 5, 8, 8) and out["batch_index"] == [0]
    with pytest.raises(InputError, match="noise_mask"):
        upscale_samples({**video, "noise_mask": torch.ones(1, 4, 4)}, "wan21", 2, method="bilinear", frames=5)
