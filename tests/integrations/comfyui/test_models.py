"""Model folders: the pack's interposers folder, extra_model_paths.yaml entries, and latentbridge.weights lookups."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from latentbridge import weights
from latentbridge.errors import InputError, WeightsNotFoundError
from latentbridge.integrations.comfyui import models


def test_register_model_folders_adds_interposers_and_feeds_weights(comfy):
    found = models.register_model_folders()
    interposers = str(Path(comfy.models_dir) / "interposers")
    assert found[models.INTERPOSERS] == [interposers]
    assert comfy.folder_names_and_paths["interposers"][1] == comfy.supported_pt_extensions
    for kind in models.MODEL_FOLDERS:
        assert Path(comfy.get_folder_paths(kind)[0]) in weights.search_dirs(kind)
    assert Path(interposers) not in weights.search_dirs("vae_approx")


def test_register_model_folders_keeps_extra_model_paths_entries(comfy, tmp_path):
    """extra_model_paths.yaml is read before custom nodes load, so its interposers folder exists first."""
    shared = tmp_path / "shared_models"
    comfy.add_model_folder_path("interposers", str(shared / "interposers"))
    comfy.add_model_folder_path("vae_approx", str(shared / "vae_approx"))
    models.register_model_folders()
    models.register_model_folders()  # idempotent
    assert comfy.get_folder_paths("interposers") == [str(shared / "interposers"),
                                                     str(Path(comfy.models_dir) / "interposers")]
    assert str(shared / "vae_approx") in comfy.get_folder_paths("vae_approx")
    (shared / "vae_approx").mkdir(parents=True)
    (shared / "vae_approx" / "taesd_decoder.safetensors").write_bytes(b"")
    resolved = weights.resolve("taesd_decoder", filenames=["taesd_decoder.safetensors"], folder="vae_approx")
    assert resolved == shared / "vae_approx" / "taesd_decoder.safetensors"


def test_model_path_finds_a_listed_file_and_names_the_folders_when_missing(comfy):
    folder = Path(comfy.get_folder_paths("latent_upscale_models")[0])
    folder.mkdir(parents=True)
    (folder / "up.safetensors").write_bytes(b"")
    assert models.model_files("latent_upscale_models") == ["up.safetensors"]
    assert models.model_path("latent_upscale_models", "up.safetensors") == folder / "up.safetensors"
    with pytest.raises(WeightsNotFoundError, match=r"nope\.safetensors is not in ComfyUI's interposers folders"):
        models.model_path("interposers", "nope.safetensors")


def test_outside_comfyui_registration_is_a_no_op_and_lookups_say_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "folder_paths", None)  # import folder_paths raises ImportError
    assert models.register_model_folders() == {}
    with pytest.raises(InputError, match="run it inside ComfyUI"):
        models.model_files("vae_approx")
