import pytest
import torch
import torch.nn.functional as F

from latentbridge.errors import InputError
from latentbridge.preview import FORMS, factors_psnr, feature_count, features, fit_factors


def _synthetic(weight, bias, *, n=6, channels=8, down=4, quadratic=None):
    """Latents and images whose cell averages are exactly ``features(latent) @ weight + bias`` (in [-1, 1])."""
    latents = torch.randn(n, channels, 6, 5, dtype=torch.float64)
    form = "quadratic" if quadratic else "affine"
    rgb = torch.einsum("bfhw,fk->bkhw", features(latents, form), weight) + bias.view(1, 3, 1, 1)
    images = (rgb + 1) / 2  # nearest upsampling keeps every cell's average exact
    return latents, images.repeat_interleave(down, 2).repeat_interleave(down, 3)


def test_fit_factors_reproduces_a_known_affine_map_exactly():
    torch.manual_seed(1)
    weight, bias = torch.randn(8, 3, dtype=torch.float64) * 0.2, torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64)
    latents, images = _synthetic(weight, bias)
    fitted = fit_factors([(latents[:3], images[:3]), (latents[3:], images[3:])], forms=("affine",), ridge=0.0)
    f = fitted["affine"]
    torch.testing.assert_close(f.weight.double(), weight, atol=1e-6, rtol=0)
    torch.testing.assert_close(f.bias.double(), bias, atol=1e-6, rtol=0)


def test_fit_factors_reproduces_a_known_quadratic_map_exactly():
    torch.manual_seed(2)
    c = 4
    weight = torch.randn(feature_count(c, "quadratic"), 3, dtype=torch.float64) * 0.1
    bias = torch.tensor([0.0, 0.3, -0.1], dtype=torch.float64)
    latents, images = _synthetic(weight, bias, n=12, channels=c, quadratic=True)
    f = fit_factors([(latents, images)], forms=("quadratic",), ridge=0.0)["quadratic"]
    torch.testing.assert_close(f.weight.double(), weight, atol=1e-6, rtol=0)
    torch.testing.assert_close(f.bias.double(), bias, atol=1e-6, rtol=0)


def test_fit_factors_default_ridge_stays_close_to_the_exact_map():
    torch.manual_seed(3)
    weight, bias = torch.randn(8, 3, dtype=torch.float64) * 0.2, torch.zeros(3, dtype=torch.float64)
    latents, images = _synthetic(weight, bias)
    f = fit_factors([(latents, images)], forms=("linear",))["linear"]
    assert f.bias is None
    torch.testing.assert_close(f.weight.double(), weight, atol=1e-3, rtol=0)


def test_fit_factors_every_form_beats_a_constant_on_held_out_data():
    torch.manual_seed(4)
    weight, bias = torch.randn(8, 3, dtype=torch.float64) * 0.2, torch.tensor([0.1, 0.0, -0.1], dtype=torch.float64)
    latents, images = _synthetic(weight, bias, n=10)
    images = (images + 0.02 * torch.randn_like(images)).clamp(0, 1)
    fitted = fit_factors([(latents[:8], images[:8])])
    assert set(fitted) == set(FORMS)
    for form in ("affine", "quadratic"):
        assert float(factors_psnr(fitted[form], latents[8:].float(), images[8:].float()).mean()) > 30


def test_fit_factors_rejects_mismatched_pairs():
    with pytest.raises(InputError, match="same batch"):
        fit_factors([(torch.randn(2, 4, 8, 8), torch.rand(3, 3, 64, 64))])
    with pytest.raises(InputError, match="no"):
        fit_factors([])
    with pytest.raises(InputError, match="form"):
        fit_factors([(torch.randn(1, 4, 8, 8), torch.rand(1, 3, 64, 64))], forms=("cubic",))


def test_area_target_averages_each_cell():
    from latentbridge.preview import area_target

    img = torch.rand(1, 3, 32, 24)
    torch.testing.assert_close(area_target(img, (4, 3)), F.avg_pool2d(img, 8))


def test_fit_factors_packed_reproduces_a_phase_dependent_map_exactly():
    # a different affine map at each position of every 2x2 cell (what FLUX.2's per-phase normalisation needs)
    torch.manual_seed(5)
    c, p = 3, 2
    latents = torch.randn(4, c, 8, 6, dtype=torch.float64)
    weight = torch.randn(c * p * p, 3 * p * p, dtype=torch.float64) * 0.2
    bias = torch.randn(3 * p * p, dtype=torch.float64) * 0.1
    rgb = F.pixel_shuffle(torch.einsum("bfhw,fk->bkhw", F.pixel_unshuffle(latents, p), weight) + bias.view(1, -1, 1, 1), p)
    images = ((rgb + 1) / 2).repeat_interleave(4, 2).repeat_interleave(4, 3)
    fitted = fit_factors([(latents, images)], forms=("affine", "quadratic"), ridge=0.0, patch=p)
    f = fitted["affine"]
    assert f.patch == 2 and f.channels == c and fitted["quadratic"].patch == 1
    torch.testing.assert_close(f.weight.double(), weight, atol=1e-6, rtol=0)
    torch.testing.assert_close(f.bias.double(), bias, atol=1e-6, rtol=0)
    x = latents.float()
    torch.testing.assert_close(f.preview(x), f.rgb(x).add(1).div(2).clamp(0, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(f.preview(F.pixel_unshuffle(x, 2), patch=2), f.preview(x), atol=1e-6, rtol=0)
