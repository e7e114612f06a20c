import pytest
import torch
from tests.conftest import shared_file

from latentbridge import spaces, tiny
from latentbridge.errors import WeightsNotFoundError


def test_load_taef2_by_name_finds_both_halves(shared_models):
    m = tiny.load("taef2")
    assert (m.has_encoder, m.has_decoder) == (True, True)
    assert (m.variant, m.latent_channels, m.downscale) == ("flux_2", 32, 8)
    assert m.space is spaces.get("flux2") and not m.training
    assert all(not p.requires_grad for p in m.parameters())


def test_load_is_cached_per_file_device_and_dtype(shared_models):
    a = tiny.load("taef2")
    assert tiny.load("taef2") is a
    assert tiny.load("taef2", dtype=torch.bfloat16) is not a
    assert tiny.load("taef2", dtype=torch.bfloat16).dtype == torch.bfloat16


def test_load_one_half_by_name(shared_models):
    dec = tiny.load("taef2_decoder")
    assert dec.has_decoder and not dec.has_encoder
    assert dec.name == "taef2_decoder"


def test_load_name_with_only_one_half_present_loads_that_half(shared_models):
    m = tiny.load("taesana")  # the decoder is not published in the mirror
    assert m.has_encoder and not m.has_decoder
    assert (m.variant, m.latent_channels, m.downscale, m.space.id) == ("f32", 32, 32, "sana")


def test_load_path_reads_variant_and_channels_from_the_weights(tmp_path):
    src = shared_file("taef2_decoder.pth")
    renamed = tmp_path / "taesd_decoder.pth"  # a misleading name must not matter
    renamed.write_bytes(src.read_bytes())
    m = tiny.load(renamed)
    assert (m.variant, m.latent_channels, m.space.id) == ("flux_2", 32, "flux2")


def test_load_two_paths_combines_the_halves():
    m = tiny.load([shared_file("taef2_encoder.pth"), shared_file("taef2_decoder.pth")])
    assert m.has_encoder and m.has_decoder


def test_load_unknown_name_says_where_it_looked(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="taesdxl.*Looked in.*github.com/madebyollin/taesd"):
        tiny.load("taesdxl", models_dir=tmp_path)


def test_load_missing_path_is_not_found(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="no such weight file"):
        tiny.load(tmp_path / "nothing.pth")


def test_load_space_override_enables_domains(shared_models):
    m = tiny.load(shared_file("taef2_decoder.pth"), space="flux2")
    assert m.space.id == "flux2"
