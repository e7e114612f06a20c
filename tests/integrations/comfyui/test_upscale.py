"""Latent Upscale: ratios and pixel sizes, noise_mask and batch_index, learned models from latent_upscale_models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from latentbridge import spaces, upscale, weights
from latentbridge.errors import AmbiguousError, InputError, WeightsNotFoundError
from latentbridge.integrations.comfyui.common import SPACE_KEY
from latentbridge.integrations.comfyui.upscale import LatentUpscale
from latentbridge.upscale.learned import UpscalerConfig, UpscalerNet, to_tensors, weight_name


def run(latent: dict, method: str = "bicubic", scale_by: float = 2.0, width: int = 0, height: int = 0,
        space: str = "auto", model: str = "auto") -> tuple[dict, str]:
    out = LatentUpscale().upscale(latent, method, scale_by, width, height, space, model)
    return out["result"][0], out["ui"]["text"][0]


@pytest.fixture
def upscalers(comfy, tmp_path, monkeypatch) -> Path:
    """ComfyUI's latent_upscale_models folder holding a small random sd1 upscaler; no shipped models."""
    monkeypatch.setattr(weights, "PACKAGE_MODELS", tmp_path / "no_shipped_models")
    folder = Path(comfy.get_folder_paths("latent_upscale_models")[0])
    folder.mkdir(parents=True)
    net = UpscalerNet(UpscalerConfig(channels=4, width=8, blocks=1, sub=2, sub_channels=4, head=8))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    tensors, meta = to_tensors(net, spaces.get("sd1"))
    save_file(tensors, str(folder / weight_name(spaces.get("sd1"))), metadata=meta)
    return folder


def test_upscale_resizes_mask_keeps_batch_index_and_leaves_the_input_alone(comfy):
    latent = {"samples": torch.randn(2, 4, 8, 6), "noise_mask": torch.rand(1, 8, 6), "batch_index": [7, 8]}
    before = {k: v.clone() if isinstance(v, torch.Tensor) else list(v) for k, v in latent.items()}
    out, text = run(latent, "bicubic", 1.5, space="sd1")
    assert out["samples"].shape == (2, 4, 12, 9) and out["noise_mask"].shape == (1, 12, 9)
    assert out["batch_index"] == [7, 8] and out[SPACE_KEY] == "sd1"
    assert torch.equal(out["samples"], upscale.upscale(before["samples"], "sd1", 1.5, method="bicubic", domain="raw"))
    assert text == "sd1 (2, 4, 8, 6) -> (2, 4, 12, 9), image 48x64 -> 72x96 px, bicubic"
    assert all(torch.equal(latent[k], v) if isinstance(v, torch.Tensor) else latent[k] == v for k, v in before.items())


def test_upscale_to_a_pixel_size_and_image_resolution_masks(comfy):
    latent = {"samples": torch.randn(1, 16, 8, 8), "noise_mask": torch.rand(1, 64, 64), SPACE_KEY: "flux1"}
    out, _ = run(latent, "bilinear", width=128)
    assert out["samples"].shape == (1, 16, 16, 16) and out["noise_mask"].shape == (1, 128, 128)
    with pytest.raises(InputError, match=r"the node's 'width' input \(100\) is not a .*multiple of flux1's 8-pixel "
                                          "latent cells"):
        run(latent, width=100)


def test_upscale_keeps_a_mask_of_any_other_size(comfy):
    mask = torch.rand(1, 50, 50)  # ComfyUI's samplers resize it to the latent themselves
    out, _ = run({"samples": torch.randn(1, 4, 8, 8), "noise_mask": mask}, space="sd1")
    assert out["noise_mask"] is mask


def test_plain_upscale_of_an_undetectable_latent_records_nothing_and_learned_needs_the_space(comfy):
    latent = {"samples": torch.randn(1, 4, 8, 8) * 6}
    out, text = run(latent, "nearest", 0.5)
    assert out["samples"].shape == (1, 4, 4, 4) and SPACE_KEY not in out and text.startswith("space not stated")
    with pytest.raises(AmbiguousError, match="choose it in the node's 'space' input"):
        run(latent, "nn")


def test_packed_flux2_latents_are_resized_unpacked(comfy):
    latent = {"samples": torch.randn(1, 128, 4, 4), SPACE_KEY: "flux2"}
    out, text = run(latent, "bicubic", 1.5)
    assert out["samples"].shape == (1, 128, 6, 6) and "image 64x64 -> 96x96 px" in text


def test_learned_upscale_finds_the_spaces_model_in_latent_upscale_models(upscalers):
    latent = {"samples": torch.randn(1, 4, 8, 8), SPACE_KEY: "sd1"}
    auto, text = run(latent, "nn", 2.0)
    chosen, _ = run(latent, "nn", 2.0, model="upscaler-sd1.safetensors")
    assert auto["samples"].shape == (1, 4, 16, 16) and torch.equal(auto["samples"], chosen["samples"])
    assert text.endswith("nn (upscaler-sd1.safetensors)")
    with pytest.raises(WeightsNotFoundError, match="no learned upscaler for sdxl.*plain method such as bicubic"):
        run(latent, "nn", 2.0, space="sdxl")
    with pytest.raises(WeightsNotFoundError, match="gone.safetensors is not in ComfyUI's latent_upscale_models"):
        run(latent, "nn", 2.0, model="gone.safetensors")


def test_upscale_of_a_video_latent_resizes_every_frame_and_keeps_them(comfy):
    latent = {"samples": torch.randn(1, 16, 5, 4, 6), SPACE_KEY: "wan21"}  # a Wan LATENT: T=5 differs from C=16
    out, _ = run(latent, "bicubic", 2.0)
    assert out["samples"].shape == (1, 16, 5, 8, 12) and out[SPACE_KEY] == "wan21"
    torch.testing.assert_close(out["samples"][:, :, 3], upscale.resample(latent["samples"][:, :, 3], (8, 12), "bicubic"))
