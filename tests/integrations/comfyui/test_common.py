"""LATENT dict helpers and how a node settles the space of its samples."""

from __future__ import annotations

import pytest
import torch

from latentbridge import spaces
from latentbridge.errors import AmbiguousError, InputError, UnknownSpaceError
from latentbridge.integrations.comfyui.common import (
    AUTO,
    SPACE_KEY,
    latent_samples,
    new_latent,
    resolve_space,
    stated_space,
)


def test_latent_samples_rejects_what_is_not_a_latent_dict():
    with pytest.raises(InputError, match="must be a ComfyUI LATENT"):
        latent_samples(torch.zeros(1, 4, 8, 8))


def test_new_latent_keeps_other_keys_and_leaves_the_input_alone():
    latent = {"samples": torch.zeros(2, 4, 8, 8), "batch_index": [0, 1], SPACE_KEY: "sd1"}
    out = new_latent(latent, torch.ones(2, 16, 8, 8), spaces.get("flux1"))
    assert out["batch_index"] == [0, 1] and out[SPACE_KEY] == "flux1"
    assert latent[SPACE_KEY] == "sd1" and latent["samples"].abs().sum() == 0
    assert SPACE_KEY not in new_latent(latent, latent["samples"], None)
    assert stated_space(out) is spaces.get("flux1") and stated_space({"samples": out["samples"]}) is None


@pytest.mark.parametrize("space", [s for s in spaces.all() if s.ndim == 4], ids=lambda s: s.id)
def test_resolve_space_takes_the_chosen_space(space):
    samples = torch.randn(1, space.channels, 4, 4)
    assert resolve_space(samples, space.id) == (space, "chosen on the node")


def test_resolve_space_prefers_the_choice_over_the_stated_space():
    samples = torch.randn(1, 4, 8, 8)
    assert resolve_space(samples, "sdxl", stated=spaces.get("sd1"))[0] is spaces.get("sdxl")
    assert resolve_space(samples, AUTO, stated=spaces.get("sd1")) == (spaces.get("sd1"), "stated by the latent")


def test_resolve_space_detects_an_unambiguous_space():
    flux_raw = spaces.get("flux1").from_model(torch.randn(1, 16, 16, 16))
    space, how = resolve_space(flux_raw, AUTO)
    assert space is spaces.get("flux1") and how.startswith("detected")


def test_resolve_space_names_the_node_input_when_detection_cannot_tell():
    sd_like = torch.randn(1, 4, 16, 16) * 6
    with pytest.raises(AmbiguousError, match="cannot tell.*choose it in the node's 'space' input"):
        resolve_space(sd_like, AUTO)
    space, how = resolve_space(sd_like, AUTO, required=False)
    assert space is None and how.startswith("not known")


def test_resolve_space_rejects_a_choice_that_does_not_fit_the_shape():
    with pytest.raises(InputError, match="C=16"):
        resolve_space(torch.randn(1, 4, 8, 8), "flux1")
    with pytest.raises(UnknownSpaceError, match="known spaces"):
        resolve_space(torch.randn(1, 4, 8, 8), "sd9")


class Patcher:
    """A MODEL as nodes see it: ``get_model_object('latent_format')`` returns an instance of a ComfyUI format class."""

    def __init__(self, format_name: str) -> None:
        self.latent_format = type(format_name, (), {})()

    def get_model_object(self, name: str):
        return self.latent_format if name == "latent_format" else None


def vae(channels: int, downscale, dim: int = 2):
    return type("VAE", (), {"latent_channels": channels, "downscale_ratio": downscale, "latent_dim": dim})()


def test_a_models_latent_format_settles_the_space_before_the_statistics():
    sd_like = torch.randn(1, 4, 16, 16) * 6  # detection alone cannot tell sd1 from sdxl
    space, how = resolve_space(sd_like, AUTO, model=Patcher("SD15"))
    assert space is spaces.get("sd1") and how == "from the MODEL's latent format (SD15)"
    assert resolve_space(sd_like, "sdxl", model=Patcher("SD15"))[0] is spaces.get("sdxl")  # the node's choice first
    with pytest.raises(InputError, match="the space was from the MODEL's latent format.*node's 'space' input"):
        resolve_space(torch.randn(1, 16, 8, 8), AUTO, model=Patcher("SD15"))
    with pytest.raises(AmbiguousError, match="latent format Mystery is new to latentbridge.*'space' input"):
        resolve_space(sd_like, AUTO, model=Patcher("Mystery"))


def test_a_vae_settles_the_space_when_its_channels_and_downscale_fit_one():
    flux2_raw = torch.randn(1, 128, 4, 4)
    assert resolve_space(flux2_raw, AUTO, vae=vae(32, 8))[0] is spaces.get("flux2")  # unpacked FLUX.2 VAE
    space, how = resolve_space(torch.randn(1, 32, 4, 4), AUTO, vae=vae(32, 32))
    assert space is spaces.get("sana") and how == "from the VAE (32 channels at 1/32)"


def test_a_vae_shared_by_several_spaces_narrows_detection_and_never_guesses():
    sd_vae_latent = torch.randn(1, 4, 16, 16) * 5.5  # an SD1.5 VAE encode: once taken for cascade_b (4 channels, /4)
    with pytest.raises(AmbiguousError, match=r"among the VAE's spaces \(4 channels at 1/8: sd1, sdxl, playground25\)"):
        resolve_space(sd_vae_latent, AUTO, vae=vae(4, 8))
    space, how = resolve_space(sd_vae_latent, AUTO, vae=vae(4, 8), required=False)
    assert space is None and "among the VAE's spaces" in how
