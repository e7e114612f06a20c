"""The neural preview ladder: rung choice by size, fall back to an installed rung, and the registry's rungs."""

import dataclasses

import pytest
import torch

from latentbridge import spaces, weights
from latentbridge.errors import WeightsFormatError, WeightsNotFoundError
from latentbridge.preview import neural, preview, resize

FLUX2 = spaces.get("flux2")


@pytest.mark.parametrize("want, scale", [(None, 1), (32, 1), (128, 1), (191, 1), (192, 1), (193, 2), (256, 2),
                                         (512, 2), (4096, 2)])
def test_ladder_puts_the_rung_nearest_the_wanted_size_first(want, scale):
    # a 1024-pixel FLUX.2 image: 128 taesd-domain latent pixels; /8 gives 128 pixels, /4 256 (192: a tie)
    assert neural.ladder(FLUX2, 128, want)[0].scale == scale


def test_file_names_come_from_the_registry_ladder():
    assert neural.file_name("flux2", 2) == "previewer-flux2-x2.safetensors"
    assert neural.file_name("flux2") == "previewer-flux2.safetensors"
    assert neural.file_name("sd1", 2) == "previewer-sd1-x2.safetensors"  # a scale its ladder does not list


def test_ladder_leaves_out_rungs_finer_than_a_cost_cap():
    assert [r.scale for r in neural.ladder(FLUX2, 128, 512, finest=1)] == [1]
    assert neural.ladder(FLUX2, 128, 512, finest=0) == []


def test_spaces_without_a_declared_ladder_have_one_rung_at_latent_resolution():
    for sp in spaces.all():
        if sp.previewers is None:
            assert sp.preview_rungs == (spaces.PreviewRung(f"previewer-{sp.id}"),)
    assert [(r.name, r.scale) for r in FLUX2.preview_rungs] == [("previewer-flux2", 1), ("previewer-flux2-x2", 2)]


def test_a_rung_scale_that_does_not_divide_the_downscale_is_refused():
    with pytest.raises(ValueError, match="preview rungs"):
        dataclasses.replace(FLUX2, previewers=(spaces.PreviewRung("previewer-odd", scale=3),))
    with pytest.raises(ValueError, match="preview rungs"):
        dataclasses.replace(FLUX2, previewers=(spaces.PreviewRung("a"), spaces.PreviewRung("b")))


@pytest.mark.parametrize("sp", spaces.all(), ids=lambda s: s.id)
def test_every_registry_rung_resolves_to_a_matching_shipped_file_or_is_reported_absent(sp):
    for rung in sp.preview_rungs:
        name = neural.file_name(sp, rung.scale)
        assert name == f"{rung.name}.safetensors"
        try:
            path = neural.find(sp, scale=rung.scale)
        except WeightsNotFoundError as e:
            assert name in str(e) and name in e.filenames
            continue
        assert path.parent == weights.PACKAGE_MODELS
        model = neural.load(sp, scale=rung.scale)  # refuses a file of another space or scale
        assert model.config.channels == sp.taesd_channels


def test_every_shipped_previewer_file_is_a_rung_of_the_registry():
    names = {f"{r.name}.safetensors" for sp in spaces.all() for r in sp.preview_rungs}
    shipped = {p.name for p in weights.PACKAGE_MODELS.glob("previewer-*.safetensors")}
    assert shipped and shipped <= names


def test_the_x4_rung_gives_twice_the_x8_rungs_size_before_resizing(preview_rungs):
    preview_rungs("flux2", 1)
    preview_rungs("flux2", 2)
    x = torch.randn(2, 128, 8, 6)  # packed model domain: 16 x 12 at /8
    z = spaces.unpack(x)
    fine, coarse = neural.load(FLUX2, scale=2), neural.load(FLUX2, scale=1)
    with torch.no_grad():
        assert fine(z).shape == (2, 3, 32, 24) and coarse(z).shape == (2, 3, 16, 12)
        torch.testing.assert_close(preview(x, FLUX2, method="neural", size=32), fine(z).clamp(0, 1), atol=1e-6, rtol=0)
        torch.testing.assert_close(preview(x, FLUX2, method="neural", size=16), coarse(z).clamp(0, 1), atol=1e-6,
                                   rtol=0)


@pytest.mark.parametrize("size, scale", [(8, 1), (16, 1), (23, 1), (24, 1), (25, 2), (32, 2), (64, 2), ((20, 30), 2)])
def test_preview_size_runs_the_nearest_rung_and_resizes_the_rest(preview_rungs, size, scale):
    preview_rungs("flux2", 1)
    preview_rungs("flux2", 2)
    x = torch.randn(1, 128, 8, 6)  # 16 x 12 at /8, 32 x 24 at /4
    ran = preview(x, FLUX2, method="neural", previewer=neural.find(FLUX2, scale=scale))
    out = preview(x, FLUX2, method="neural", size=size)
    torch.testing.assert_close(out, resize(ran, size), atol=1e-6, rtol=0)


def test_without_size_the_default_rung_stays_at_latent_resolution(preview_rungs):
    preview_rungs("flux2", 1)
    preview_rungs("flux2", 2)
    x = torch.randn(1, 128, 8, 6)
    coarse = preview(x, FLUX2, method="neural", previewer=neural.find(FLUX2, scale=1))
    assert torch.equal(preview(x, FLUX2, method="neural"), coarse)


def test_a_missing_x4_rung_falls_back_to_the_x8_rung(preview_rungs):
    preview_rungs("flux2", 1)
    x = torch.randn(1, 128, 8, 6)
    coarse = preview(x, FLUX2, method="neural", previewer=neural.find(FLUX2, scale=1))
    assert neural.pick(FLUX2, 16, 64)[0].scale == 1
    torch.testing.assert_close(preview(x, FLUX2, method="neural", size=64), resize(coarse, 64), atol=1e-6, rtol=0)


def test_a_missing_x8_rung_falls_back_to_the_x4_rung_at_the_same_output_size(preview_rungs):
    preview_rungs("flux2", 2)
    x = torch.randn(1, 128, 8, 6)
    assert neural.pick(FLUX2, 16)[0].scale == 2
    assert preview(x, FLUX2, method="neural").shape == (1, 3, 16, 12)
    assert preview(x, FLUX2, method="neural", size=8).shape == (1, 3, 8, 6)


def test_no_installed_rung_names_every_rung_file(preview_rungs):
    with pytest.raises(WeightsNotFoundError, match="previewer-flux2.safetensors or previewer-flux2-x2") as e:
        preview(torch.randn(1, 128, 4, 4), FLUX2, method="neural", size=64)
    assert e.value.filenames == ("previewer-flux2.safetensors", "previewer-flux2-x2.safetensors")


def test_a_rung_file_of_another_scale_is_refused(preview_rungs):
    preview_rungs("flux2", 1, name_scale=2)
    with pytest.raises(WeightsFormatError, match="scale 1.*scale 2"):
        neural.load(FLUX2, scale=2)


def test_an_explicit_previewer_file_keeps_its_own_scale(preview_rungs):
    path = preview_rungs("flux2", 2)
    assert preview(torch.randn(1, 128, 4, 4), FLUX2, method="neural", previewer=path).shape == (1, 3, 16, 16)
