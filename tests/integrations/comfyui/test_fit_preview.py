"""Fit Preview Factors: a ComfyUI VAE and images in, linear and affine factors fitted and saved in vae_approx, where
Latent Preview and the live previews find them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tests.conftest import shared_file
from tests.integrations.comfyui import fake_comfy

from latentbridge import preview, tiny
from latentbridge.demo_data import EXAMPLES
from latentbridge.errors import InputError
from latentbridge.integrations.comfyui import live_preview, models
from latentbridge.integrations.comfyui.fit_preview import FitPreviewFactors, space_of_vae
from latentbridge.integrations.comfyui.preview import LatentPreview

MIX = torch.tensor([[0.9, -0.3, 0.2, 0.5], [0.1, 0.8, -0.4, 0.3], [-0.2, 0.4, 0.7, -0.6]])  # RGB -> 4 channels


class LinearVAE:
    """A ComfyUI-like VAE (IMAGE in, raw LATENT out) whose latent is a linear map of the image's 8x8 cell means."""

    latent_channels, downscale_ratio = 4, 8

    def __init__(self):
        self.seen = []

    def encode(self, pixels):
        self.seen.append(tuple(pixels.shape))
        cells = F.avg_pool2d(pixels.permute(0, 3, 1, 2) * 2 - 1, 8)
        return torch.einsum("bchw,ck->bkhw", cells, MIX) / 0.18215 + 0.1


class TinyVAE:
    """The TAEF2 encoder behind ComfyUI's VAE interface: FLUX.2 latents (128 channels at /16)."""

    latent_channels, downscale_ratio = 128, 16

    def __init__(self):
        self.model = tiny.load(shared_file("taef2_encoder.pth"), space="flux2")

    def encode(self, pixels):
        return self.model.encode(pixels.permute(0, 3, 1, 2), domain="raw")


def photos(size: int = 256) -> torch.Tensor:
    images = [np.asarray(Image.open(p).convert("RGB").resize((size, size))) for p in sorted(EXAMPLES.glob("*.jpg"))]
    return torch.from_numpy(np.stack(images)).float() / 255


def run(images, vae, space="auto", name="", overwrite=True):
    out = FitPreviewFactors().fit(images, vae, space, name, overwrite)
    return out["result"]


def test_fit_saves_linear_and_affine_factors_under_the_format_name_and_the_previews_use_them(comfy, monkeypatch):
    vae = LinearVAE()
    path, report = run(photos(100), vae, "sd1")
    assert vae.seen == [(6, 96, 96, 3)]  # centre-cropped to whole latent cells before encoding
    assert Path(path) == Path(comfy.get_folder_paths("vae_approx")[0]) / "factors-SD15.safetensors"
    assert preview.load_factors(path, form="linear").bias is None
    affine = preview.load_factors(path)
    assert affine.form == "affine" and "affine: " in report and "built-in: " in report
    latent = vae.encode(photos(64))
    target = preview.area_target(photos(64).permute(0, 3, 1, 2), latent.shape[-2:])
    previews = preview.preview(latent, "sd1", domain="raw", factors=affine)
    assert float(preview.psnr(previews, target).min()) > 40  # the VAE is linear: the fit recovers it
    out = LatentPreview().preview({"samples": latent}, "linear", "sd1")
    images, text = out["result"][0], out["ui"]["text"][0]
    assert text.endswith("with factors-SD15.safetensors")
    assert torch.allclose(images, previews.permute(0, 2, 3, 1), atol=1e-5)
    module = fake_comfy.install_previews(monkeypatch, "latent2rgb")
    monkeypatch.setattr(live_preview, "_switch", None)
    monkeypatch.delenv(live_preview.ENV_SWITCH, raising=False)
    live_preview.install(module)
    assert "factors-SD15.safetensors" in module.get_previewer("cpu", fake_comfy.SD15()).label


def test_fit_under_a_given_name(comfy):
    path, _ = run(photos(64), LinearVAE(), "sd1", name="MyModel")
    assert Path(path).name == "factors-MyModel.safetensors"
    with pytest.raises(InputError, match="input 'name'"):
        run(photos(64), LinearVAE(), "sd1", name="../escape")


def test_fit_refuses_to_replace_a_file_unless_told(comfy):
    run(photos(64), LinearVAE(), "sd1")
    with pytest.raises(InputError, match="exists"):
        run(photos(64), LinearVAE(), "sd1", overwrite=False)


def test_space_comes_from_the_vae_when_only_one_space_fits():
    assert space_of_vae(TinyVAE.__new__(TinyVAE)).id == "flux2"
    with pytest.raises(InputError, match="'space' input") as e:
        space_of_vae(LinearVAE())
    assert "sd1" in str(e.value) and "sdxl" in str(e.value)


def test_flux2_factors_fitted_through_taef2_beat_the_built_in_ones_and_serve_live_previews(comfy, monkeypatch):
    models.register_model_folders()
    path, report = run(photos(), TinyVAE())
    assert Path(path).name == "factors-Flux2.safetensors"
    fitted = preview.load_factors(path)
    assert fitted.patch == 2  # per 2x2 cell, as the FLUX.2 latent's normalisation needs
    scores = dict(line.split(": ")[0:2] for line in report.splitlines()[1:])
    assert float(scores["affine"].split()[0]) > float(scores["built-in"].split()[0]) + 1
    module = fake_comfy.install_previews(monkeypatch, "latent2rgb")
    monkeypatch.setattr(live_preview, "_switch", None)
    monkeypatch.delenv(live_preview.ENV_SWITCH, raising=False)
    live_preview.install(module)
    assert "factors-Flux2.safetensors" in module.get_previewer("cpu", fake_comfy.Flux2()).label
