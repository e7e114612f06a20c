"""Save Latent / Load Latent: ComfyUI-compatible files that record the space, found in input/ and output/latents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from latentbridge import io, spaces
from latentbridge.errors import InputError
from latentbridge.integrations.comfyui.common import SPACE_KEY
from latentbridge.integrations.comfyui.latent_files import LoadLatent, SaveLatent, list_latent_files


def save(latent: dict, space: str = "auto", prefix: str = "latents/test", **hidden) -> tuple[Path, str]:
    ui = SaveLatent().save(latent, prefix, space, **hidden)["ui"]
    (entry,) = ui["latents"]
    return Path(entry["subfolder"], entry["filename"]), ui["text"][0]


def test_save_latent_writes_what_comfyui_load_latent_reads(comfy):
    samples = torch.randn(2, 4, 8, 8)
    rel, text = save({"samples": samples}, "sd1", prompt={"1": {"class_type": "X"}}, extra_pnginfo={"workflow": {}})
    path = Path(comfy.get_output_directory()) / rel
    assert rel == Path("latents/test_00001_.latent") and "space sd1 (chosen on the node)" in text
    tensors = load_file(str(path))
    assert torch.equal(tensors["latent_tensor"], samples) and "latent_format_version_0" in tensors
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["latentbridge.space"] == "sd1" and meta["latentbridge.domain"] == "raw"
    assert json.loads(meta["prompt"]) == {"1": {"class_type": "X"}} and meta["workflow"] == "{}"


def test_save_latent_counts_up_and_never_overwrites(comfy):
    first, _ = save({"samples": torch.randn(1, 4, 8, 8)}, "sd1")
    second, _ = save({"samples": torch.randn(1, 4, 8, 8)}, "sd1")
    assert (first.name, second.name) == ("test_00001_.latent", "test_00002_.latent")


def test_save_latent_records_no_space_when_auto_cannot_tell(comfy):
    rel, text = save({"samples": torch.randn(1, 4, 8, 8) * 6})
    assert "no space recorded" in text and "'space' is auto; detection: cannot tell" in text
    assert io.load_latent(Path(comfy.get_output_directory()) / rel).space is None


def test_save_latent_rejects_a_space_that_does_not_fit_and_nan(comfy):
    with pytest.raises(InputError, match="C=16"):
        save({"samples": torch.randn(1, 4, 8, 8)}, "flux1")
    with pytest.raises(InputError, match="NaN"):
        save({"samples": torch.full((1, 4, 8, 8), float("nan"))}, "sd1")
    with pytest.raises(InputError, match="outside ComfyUI's output folder"):
        save({"samples": torch.randn(1, 4, 8, 8)}, "sd1", prefix="../escape")
    assert not list(Path(comfy.get_output_directory()).rglob("*.latent"))


def test_save_then_load_round_trips_space_mask_and_batch_index(comfy):
    latent = {"samples": torch.randn(2, 16, 8, 8), "noise_mask": torch.rand(1, 8, 8), "batch_index": [4, 5],
              SPACE_KEY: "flux1"}
    before = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in latent.items()}
    rel, _ = save(latent)
    name = f"{rel.as_posix()} [output]"
    assert name in LoadLatent.INPUT_TYPES()["required"]["latent"][0]
    (loaded,) = LoadLatent().load(name, "auto")
    assert loaded[SPACE_KEY] == "flux1" and loaded["batch_index"] == [4, 5]
    assert torch.equal(loaded["samples"], latent["samples"]) and torch.equal(loaded["noise_mask"], latent["noise_mask"])
    assert all(torch.equal(v, latent[k]) if isinstance(v, torch.Tensor) else v == latent[k] for k, v in before.items())


def test_load_latent_reads_comfyui_files_from_input_including_legacy_ones(comfy):
    samples = torch.randn(1, 4, 8, 8)
    input_dir = Path(comfy.get_input_directory())
    save_file({"latent_tensor": samples, "latent_format_version_0": torch.tensor([])}, str(input_dir / "new.latent"))
    save_file({"latent_tensor": samples * 0.18215}, str(input_dir / "old.latent"))
    assert list_latent_files() == ["new.latent", "old.latent"]
    (new,) = LoadLatent().load("new.latent", "auto")
    (old,) = LoadLatent().load("old.latent", "auto")
    assert SPACE_KEY not in new and new["samples"].dtype == torch.float32
    assert old[SPACE_KEY] == "sd1" and torch.allclose(old["samples"], samples, atol=1e-5)
    (chosen,) = LoadLatent().load("new.latent", "sdxl")
    assert chosen[SPACE_KEY] == "sdxl"


def test_load_latent_converts_a_model_domain_file_to_raw(comfy):
    model = torch.randn(1, 16, 8, 8)
    io.save_latent(Path(comfy.get_input_directory()) / "flux.safetensors", model, space="flux1", domain="model")
    (loaded,) = LoadLatent().load("flux.safetensors", "auto")
    assert torch.allclose(loaded["samples"], spaces.get("flux1").from_model(model))
    io.save_latent(Path(comfy.get_input_directory()) / "unsaid.safetensors", model, domain="model")
    with pytest.raises(InputError, match="model domain but does not say its space"):
        LoadLatent().load("unsaid.safetensors", "auto")


def test_load_latent_validation_reports_missing_and_escaping_files(comfy):
    assert "no latent file 'gone.latent' in ComfyUI's input folder" in LoadLatent.VALIDATE_INPUTS("gone.latent")
    assert "outside ComfyUI's output folder" in LoadLatent.VALIDATE_INPUTS("../../etc/passwd [output]")
    (Path(comfy.get_input_directory()) / "a.latent").write_bytes(b"not safetensors")
    assert LoadLatent.VALIDATE_INPUTS("a.latent") is True
    with pytest.raises(InputError, match="not a readable safetensors file"):
        LoadLatent().load("a.latent", "auto")


def test_load_latent_is_changed_follows_the_file(comfy):
    path = Path(comfy.get_input_directory()) / "x.latent"
    io.save_latent(path, torch.zeros(1, 4, 8, 8))
    first = LoadLatent.IS_CHANGED("x.latent", space="auto")
    io.save_latent(path, torch.ones(1, 4, 16, 16), overwrite=True)
    assert LoadLatent.IS_CHANGED("x.latent", space="auto") != first
