import pytest
import torch

from latentbridge import spaces
from latentbridge.errors import InputError, WeightsFormatError
from latentbridge.preview import Factors, builtin, fit_factors, load_factors, save_factors

WITH_FACTORS = [s.id for s in spaces.all() if s.rgb_factors is not None]


@pytest.mark.parametrize("space", WITH_FACTORS)
def test_builtin_matches_registry_and_maps_to_unit_range(space):
    sp = spaces.get(space)
    f = builtin(space)
    assert f.channels == sp.taesd_channels
    assert torch.equal(f.weight, torch.tensor(sp.rgb_factors))
    x = torch.randn(2, sp.taesd_channels, 5, 7)
    out = f.preview(x)
    assert out.shape == (2, 3, 5, 7) and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, f.rgb(x).add(1).div(2).clamp(0, 1), atol=1e-5, rtol=0)


def test_packed_preview_equals_unpacking_first():
    f = builtin("flux2")
    x = torch.randn(2, 128, 6, 4)
    torch.testing.assert_close(f.preview(x, patch=2), f.preview(spaces.unpack(x, 2)), atol=1e-6, rtol=0)


def test_factors_reject_wrong_shapes():
    with pytest.raises(WeightsFormatError, match=r"\(F, 3\)"):
        Factors(torch.zeros(4, 4), None, "linear")
    with pytest.raises(WeightsFormatError, match="bias"):
        Factors(torch.zeros(4, 3), torch.zeros(4), "affine")
    with pytest.raises(InputError, match="take 4-channel"):
        builtin("sd1").preview(torch.randn(1, 16, 4, 4))


def test_save_and_load_factors_round_trip(tmp_path):
    x, img = torch.randn(3, 4, 8, 8), torch.rand(3, 3, 64, 64)
    fitted = fit_factors([(x, img)])
    path = save_factors(tmp_path / "f.safetensors", fitted, space="sd1", default="affine", info={"images": 3})
    for form in fitted:
        loaded = load_factors(path, form=form)
        assert loaded.form == form and loaded.space == "sd1"
        torch.testing.assert_close(loaded.weight, fitted[form].weight)
    assert load_factors(path).form == "affine"
    with pytest.raises(InputError):
        save_factors(tmp_path / "f.safetensors", fitted, space="sd1", default="affine")  # exists, no overwrite


def test_load_factors_rejects_other_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"something": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(WeightsFormatError, match="not a preview factors file"):
        load_factors(tmp_path / "x.safetensors")


def test_builtin_without_factors_says_how_to_fit():
    import dataclasses

    bare = dataclasses.replace(spaces.get("sana"), rgb_factors=None, rgb_bias=None)
    with pytest.raises(InputError, match="fit-preview"):
        builtin(bare)
