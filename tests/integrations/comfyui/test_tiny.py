"""Tiny VAE Loader / Encode / Decode: files in vae_approx, IMAGE and LATENT conventions, the space of each side."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tests.conftest import shared_file

from latentbridge import tiny
from latentbridge.errors import InputError
from latentbridge.integrations.comfyui import models
from latentbridge.integrations.comfyui.common import SPACE_KEY
from latentbridge.integrations.comfyui.tiny import (
    TinyVAEDecode,
    TinyVAEEncode,
    TinyVAELoader,
    tiny_choices,
    tiny_files,
)
from latentbridge.tiny.layouts import build


@pytest.fixture(autouse=True)
def _fresh_tiny_cache():
    tiny.clear_cache()
    yield
    tiny.clear_cache()


@pytest.fixture
def vae_approx(comfy) -> Path:
    """ComfyUI's vae_approx folder holding a random 4-channel TAESD pair (upstream keys) and an unrelated file."""
    folder = Path(comfy.get_folder_paths("vae_approx")[0])
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    for role in ("encoder", "decoder"):
        save_file(build(role, "standard", 4).state_dict(), str(folder / f"taesd_{role}.safetensors"))
    (folder / "notes.safetensors").write_bytes(b"")
    return folder


def image(batch: int = 2, height: int = 24, width: int = 40) -> torch.Tensor:
    return torch.rand(batch, height, width, 3)


def test_loader_lists_models_by_name_then_every_file(vae_approx):
    assert tiny_choices() == ["taesd", "notes.safetensors", "taesd_decoder.safetensors", "taesd_encoder.safetensors"]
    assert tiny_files("taesd") == [vae_approx / "taesd_encoder.safetensors", vae_approx / "taesd_decoder.safetensors"]
    with pytest.raises(InputError, match="no tiny autoencoder 'taef1' in ComfyUI's vae_approx"):
        tiny_files("taef1")


def test_loader_takes_the_space_from_the_name_or_the_node(vae_approx):
    out = TinyVAELoader().load("taesd")
    (model,) = out["result"]
    assert model.has_encoder and model.has_decoder and model.space.id == "sd1"
    assert out["ui"]["text"] == ["taesd: standard tiny autoencoder, 4 channels, /8, encoder + decoder; space sd1"]
    (xl,) = TinyVAELoader().load("taesd_decoder.safetensors", "sdxl")["result"]
    assert xl.space.id == "sdxl" and not xl.has_encoder


def test_encode_then_decode_keeps_the_batch_and_records_the_space(vae_approx):
    (model,) = TinyVAELoader().load("taesd")["result"]
    pixels = image()
    before = pixels.clone()
    (latent,) = TinyVAEEncode().encode(pixels, model, "crop")
    assert latent["samples"].shape == (2, 4, 3, 5) and latent[SPACE_KEY] == "sd1"
    want = model.encode(pixels.permute(0, 3, 1, 2), domain="raw")
    assert torch.allclose(latent["samples"], want)
    (decoded,) = TinyVAEDecode().decode(latent, model)
    assert decoded.shape == (2, 24, 40, 3) and 0 <= decoded.min() and decoded.max() <= 1
    assert torch.equal(pixels, before)


def test_encode_crops_pads_or_refuses_images_that_are_no_whole_cells(vae_approx):
    (model,) = TinyVAELoader().load("taesd")["result"]
    pixels = torch.rand(1, 20, 35, 3)
    assert TinyVAEEncode().encode(pixels, model, "crop")[0]["samples"].shape[-2:] == (2, 4)
    assert TinyVAEEncode().encode(pixels, model, "pad")[0]["samples"].shape[-2:] == (3, 5)
    with pytest.raises(InputError, match=r"20x35 is not a multiple of 8.*the node's 'fit' input"):
        TinyVAEEncode().encode(pixels, model, "error")


def test_decode_refuses_a_latent_of_another_space_and_unknown_models(vae_approx):
    (model,) = TinyVAELoader().load("taesd")["result"]
    with pytest.raises(InputError, match="a flux1 latent but the tiny autoencoder serves sd1"):
        TinyVAEDecode().decode({"samples": torch.zeros(1, 4, 2, 2), SPACE_KEY: "flux1"}, model)
    with pytest.raises(InputError, match="must come from Tiny VAE Loader"):
        TinyVAEDecode().decode({"samples": torch.zeros(1, 4, 2, 2)}, "taesd")
    spaceless = tiny.load(tiny_files("taesd_decoder.safetensors"))
    with pytest.raises(InputError, match="does not know its latent space"):
        TinyVAEDecode().decode({"samples": torch.zeros(1, 4, 2, 2)}, spaceless)
    with pytest.raises(InputError, match="has no encoder"):
        TinyVAEEncode().encode(image(), tiny.load(tiny_files("taesd_decoder.safetensors"), space="sd1"))


def test_real_taef2_encodes_images_to_comfyuis_packed_flux2_latent(comfy, monkeypatch):
    folder = Path(comfy.get_folder_paths("vae_approx")[0])
    folder.mkdir(parents=True)
    for half in ("encoder", "decoder"):
        (folder / f"taef2_{half}.pth").symlink_to(shared_file(f"taef2_{half}.pth"))
    models.register_model_folders()
    (model,) = TinyVAELoader().load("taef2")["result"]
    (latent,) = TinyVAEEncode().encode(image(1, 40, 72), model, "crop")  # FLUX.2 cells are 16 pixels
    assert latent["samples"].shape == (1, 128, 2, 4) and latent[SPACE_KEY] == "flux2"
    (decoded,) = TinyVAEDecode().decode(latent, model)
    assert decoded.shape == (1, 32, 64, 3)


def test_loader_is_changed_follows_the_files(vae_approx):
    first = TinyVAELoader.IS_CHANGED("taesd", space="auto")
    (vae_approx / "taesd_decoder.safetensors").write_bytes(b"")
    assert TinyVAELoader.IS_CHANGED("taesd", space="auto") != first
    assert TinyVAELoader.IS_CHANGED("gone", space="auto") == "gone"


def test_loader_fingerprint_keeps_paths_out_of_saved_metadata(vae_approx):
    assert str(vae_approx) not in TinyVAELoader.IS_CHANGED("taesd", space="auto")
