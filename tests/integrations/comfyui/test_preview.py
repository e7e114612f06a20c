"""Latent Preview: LATENT (raw domain) to a ComfyUI IMAGE batch, by each method, with the space settled."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.conftest import shared_file

from latentbridge import preview, spaces, tiny
from latentbridge.errors import AmbiguousError
from latentbridge.integrations.comfyui import models
from latentbridge.integrations.comfyui.common import SPACE_KEY
from latentbridge.integrations.comfyui.preview import LatentPreview


def run(latent: dict, method: str = "auto", space: str = "auto", size: int = 0) -> tuple[torch.Tensor, str]:
    out = LatentPreview().preview(latent, method, space, size)
    return out["result"][0], out["ui"]["text"][0]


def test_linear_preview_of_a_batch_is_a_batch_of_comfyui_images():
    latent = {"samples": torch.randn(3, 4, 6, 10) * 5}
    before = latent["samples"].clone()
    images, text = run(latent, "linear", "sd1")
    want = preview.preview(before, "sd1", method="linear", domain="raw")
    assert images.shape == (3, 6, 10, 3) and torch.allclose(images, want.permute(0, 2, 3, 1))
    assert text == "sd1 (chosen on the node) (3, 4, 6, 10) -> 3 image(s) of 10x6 px by linear"
    assert torch.equal(latent["samples"], before)


def test_preview_uses_the_stated_space_the_best_method_and_a_size():
    latent = {"samples": torch.randn(1, 128, 4, 6), SPACE_KEY: "flux2"}
    images, text = run(latent, size=96)
    assert images.shape == (1, 64, 96, 3)
    assert f"by {preview.best_method('flux2')} (auto)" in text and "flux2 (stated by the latent)" in text


def test_preview_asks_for_the_space_when_detection_cannot_tell():
    with pytest.raises(AmbiguousError, match="choose it in the node's 'space' input"):
        run({"samples": torch.randn(1, 4, 8, 8) * 6})


def test_tiny_preview_decodes_to_full_size_with_the_decoder_in_vae_approx(comfy):
    folder = Path(comfy.get_folder_paths("vae_approx")[0])
    folder.mkdir(parents=True)
    (folder / "taef2_decoder.pth").symlink_to(shared_file("taef2_decoder.pth"))
    models.register_model_folders()
    tiny.clear_cache()
    latent = {"samples": torch.randn(2, 128, 2, 3)}
    images, text = run(latent, "tiny", "flux2")
    assert images.shape == (2, 32, 48, 3) and text.endswith("by tiny") and spaces.get("flux2").tiny == "taef2"


@pytest.mark.parametrize("space", ["wan21", "hunyuanvideo", "ltxv"])
def test_preview_of_a_video_latent_is_an_image_batch_of_its_frames_clip_by_clip(space):
    sp = spaces.get(space)
    latent = {"samples": torch.randn(2, sp.channels, 5, 4, 6)}  # 2 clips of 5 latent frames, as the models give
    images, text = run(latent, "linear", space)
    want = preview.preview(latent["samples"], sp, method="linear", domain="raw")  # (2, 3, 5, 4, 6)
    assert images.shape == (10, 4, 6, 3)
    torch.testing.assert_close(images[5 + 3], want[1, :, 3].permute(1, 2, 0))  # clip 1, frame 3
    assert f"{(2, sp.channels, 5, 4, 6)} -> 2 clip(s) of 5 frames (10 images) of 6x4 px" in text


def test_preview_of_the_real_wan_latent_gives_its_16_frames(wan_latent):
    raw = spaces.convert_domain(wan_latent.float(), "wan21", "model", "raw")  # what a ComfyUI LATENT holds
    images, _ = run({"samples": raw, SPACE_KEY: "wan21"}, "linear")
    assert images.shape == (16, 40, 64, 3)
    torch.testing.assert_close(images[7], preview.preview(wan_latent.float(), "wan21")[0, :, 7].permute(1, 2, 0),
                               atol=1e-4, rtol=0)
