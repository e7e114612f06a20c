"""Latent Interposer: models from ComfyUI's interposers folder, the route as text, LATENT keys kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.interposer.helpers import write_bridge

from latentbridge import interposer, spaces
from latentbridge.errors import AmbiguousError, InputError
from latentbridge.integrations.comfyui import models
from latentbridge.integrations.comfyui.common import SPACE_KEY
from latentbridge.integrations.comfyui.interposer import Interposer


@pytest.fixture
def interposers(comfy) -> Path:
    """A small flux2 -> sana model in ComfyUI's models/interposers, registered as the pack does at import."""
    folder = Path(comfy.models_dir) / "interposers"
    write_bridge(folder, "flux2", "sana")
    models.register_model_folders()
    return folder


def test_interposer_converts_with_the_folders_model_and_shows_the_route(interposers):
    latent = {"samples": torch.randn(2, 128, 4, 6), "noise_mask": torch.ones(1, 64, 96), "batch_index": [3, 4]}
    before = latent["samples"].clone()
    out = Interposer().convert(latent, "flux2", "sana")
    converted, text = out["result"]
    want = interposer.convert(before, "flux2", "sana", domain="raw")
    assert converted["samples"].shape == (2, 32, 2, 3) and torch.allclose(converted["samples"], want)
    assert converted[SPACE_KEY] == "sana" and converted["batch_index"] == [3, 4]
    assert converted["noise_mask"] is latent["noise_mask"]  # samplers resize masks to the latent themselves
    assert text.startswith("source flux2 (chosen on the node); route flux2 -> sana: 1 model [flux2->sana (bridge)]")
    assert out["ui"]["text"] == [text]
    assert torch.equal(latent["samples"], before) and SPACE_KEY not in latent


def test_interposer_takes_the_stated_or_detected_source(interposers):
    stated = {"samples": torch.randn(1, 128, 4, 4), SPACE_KEY: "flux2"}
    assert "source flux2 (stated by the latent)" in Interposer().convert(stated, "auto", "sana")["result"][1]
    detected = {"samples": torch.randn(1, 128, 4, 4)}
    assert "source flux2 (detected" in Interposer().convert(detected, "auto", "sana")["result"][1]
    with pytest.raises(AmbiguousError, match="choose it in the node's 'source' input"):
        Interposer().convert({"samples": torch.randn(1, 4, 8, 8) * 6}, "auto", "sana")


def test_interposer_same_space_is_a_copy_and_missing_routes_list_the_possible_ones(interposers):
    latent = {"samples": torch.randn(1, 32, 2, 2)}
    same, text = Interposer().convert(latent, "sana", "sana")["result"]
    assert torch.equal(same["samples"], latent["samples"]) and same["samples"] is not latent["samples"]
    assert "same space" in text
    with pytest.raises(InputError, match=r"no interposer route from sana to cascade_c.*flux2 -> sana"):
        Interposer().convert(latent, "sana", "cascade_c")


def test_interposer_target_choices_are_every_space():
    assert Interposer.INPUT_TYPES()["required"]["target"][0] == [s.id for s in spaces.all()]
