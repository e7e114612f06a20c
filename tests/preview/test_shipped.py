"""The shipped previewers and fitted factors: they load by name, and beat the published factors on real photos."""

import pytest
import torch
import torch.nn.functional as F

from latentbridge import io, spaces
from latentbridge.preview import best_method, builtin, default_factors, neural, preview, psnr


@pytest.mark.parametrize("space", ["flux2", "sana"])
def test_shipped_previewer_loads_by_name_and_is_the_best_method(space):
    model = neural.load(space)
    assert model.config.channels == spaces.get(space).taesd_channels
    assert neural.find(space).parent.name == "models" and best_method(space) == "neural"
    assert model.parameter_count() < 250_000


def test_shipped_flux2_factors_are_packed_and_sana_factors_are_in_the_registry():
    f = default_factors("flux2")
    assert f.patch == 2 and f.channels == 32 and f.form == "affine"
    assert builtin("sana").channels == 32 and default_factors("sana").source.startswith("built-in sana")


@pytest.mark.parametrize("space, encoder", [("flux2", "taef2_encoder"), ("sana", "taesana_encoder")])
def test_shipped_previewers_on_held_out_photos(space, encoder, photos, monkeypatch):
    from tests.conftest import SHARED_WEIGHTS, shared_file

    shared_file(f"{encoder}.pth")
    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(SHARED_WEIGHTS))
    from latentbridge import tiny

    images = torch.cat([io.load_image(p, size=256) for p in photos[40:43]])  # held-out photo_040..042
    sp = spaces.get(space)
    latent = spaces.convert_domain(tiny.load(encoder).encode(images), sp, "taesd", "model")
    target = F.avg_pool2d(images, sp.taesd_downscale)
    linear = float(psnr(preview(latent, sp), target).mean())
    ours = float(psnr(preview(latent, sp, method="neural"), target).mean())
    assert ours > linear + 4, (ours, linear)
    if space == "flux2":
        assert linear > float(psnr(preview(latent, sp, factors=builtin(sp)), target).mean()) + 1
