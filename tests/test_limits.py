"""Size limits and empty tensors: refused from shapes, before anything is allocated, by every public function."""

from __future__ import annotations

import pytest
import torch

from latentbridge import interposer, io, limits, mixing, preview, tiny, upscale
from latentbridge.errors import InputError
from latentbridge.preview import fit_factors
from latentbridge.tiny import TinyAutoencoder, arch


def test_limits_are_settings_read_when_called(monkeypatch):
    assert limits.max_pixels() == limits.DEFAULT_MAX_PIXELS
    monkeypatch.setenv(limits.ENV_MAX_PIXELS, "1_000")
    monkeypatch.setenv(limits.ENV_MAX_STEPS, "50")
    assert (limits.max_pixels(), limits.max_steps()) == (1000, 50)
    for bad in ("0", "-3", "lots", "nan", "inf", "Infinity"):
        monkeypatch.setenv(limits.ENV_MAX_PIXELS, bad)
        with pytest.raises(InputError, match="LATENTBRIDGE_MAX_PIXELS"):
            limits.max_pixels()


def test_a_result_above_the_limit_is_refused_with_its_size_and_the_setting(monkeypatch):
    monkeypatch.setenv(limits.ENV_MAX_PIXELS, "1000")
    limits.check_pixels(10, 10, 10, what="x", fix="y")
    with pytest.raises(InputError, match=r"the result would stand for 2 images of 30x20 pixels \(1,200 in all\), "
                                         r"above the limit of 1,000 set by \$LATENTBRIDGE_MAX_PIXELS: use less"):
        limits.check_pixels(2, 20, 30, what="the result", fix="use less")


@pytest.mark.parametrize(("call", "needs"), [
    (lambda: upscale.upscale(torch.randn(1, 4, 8, 8), "sd1", 1e6, method="bicubic"), "64000000x64000000"),
    (lambda: upscale.upscale(torch.randn(1, 4, 8, 8), "sd1", size=(10**6, 10**6), method="nearest"), "8000000x8000000"),
    (lambda: upscale.upscale(torch.randn(1, 128, 4, 4), "flux2", 1e5, domain="model"), "6400000x6400000"),
    (lambda: preview.preview(torch.randn(1, 4, 8, 8), "sd1", size=100_000), "100000x100000"),
    (lambda: preview.preview(torch.randn(2, 4, 8, 8), "sd1", size=(60_000, 5_000)), "2 images of 5000x60000"),
    (lambda: mixing.schedule("cosine", 100_000_000), "steps=100000000 is above the limit of 100,000 steps"),
], ids=["upscale-scale", "upscale-size", "upscale-learned", "preview-size", "preview-pair", "schedule-steps"])
def test_oversized_results_are_refused_before_allocation(call, needs):
    with pytest.raises(InputError, match="LATENTBRIDGE_MAX_") as e:
        call()
    assert needs in str(e.value)


def test_tiny_decode_refuses_images_above_the_limit(monkeypatch):
    monkeypatch.setenv(limits.ENV_MAX_PIXELS, str(64 * 64))
    model = TinyAutoencoder(variant="standard", latent_channels=4, decoder=arch.decoder(4))
    assert model.decode(torch.randn(1, 4, 8, 8)).shape == (1, 3, 64, 64)
    with pytest.raises(InputError, match="decoded images would stand for 128x64 pixels"):
        model.decode(torch.randn(1, 4, 8, 16))


def _tiny() -> TinyAutoencoder:
    return TinyAutoencoder(variant="standard", latent_channels=4, encoder=arch.encoder(4), decoder=arch.decoder(4))


EMPTY = {"0x0": (1, 0, 0), "empty batch": (0, 8, 8), "0 rows": (1, 0, 8)}
CALLS = {
    "preview linear": lambda b, hw, tmp: preview.preview(torch.randn(b, 4, *hw), "sd1"),
    "preview tiny": lambda b, hw, tmp: preview.preview(torch.randn(b, 4, *hw), "sd1", method="tiny"),
    "upscale plain": lambda b, hw, tmp: upscale.upscale(torch.randn(b, 4, *hw), "sd1", 2, method="bicubic"),
    "upscale learned": lambda b, hw, tmp: upscale.upscale(torch.randn(b, 128, *hw), "flux2", 2, domain="model"),
    "upscale_samples": lambda b, hw, tmp: upscale.upscale_samples({"samples": torch.randn(b, 4, *hw)}, "sd1", 2,
                                                         method="area"),
    "interposer convert": lambda b, hw, tmp: interposer.convert(torch.randn(b, 128, *hw), "flux2", "sana",
                                                       domain="model"),
    "tiny decode": lambda b, hw, tmp: _tiny().decode(torch.randn(b, 4, *hw)),
    "tiny encode": lambda b, hw, tmp: _tiny().encode(torch.rand(b, 3, *hw), fit="pad"),
    "mixing sample": lambda b, hw, tmp: mixing.sample(lambda x, sigma: x * 0, torch.randn(b, 4, *hw),
                                             torch.linspace(1, 0, 3), prediction="flow", disable=True),
    "mixing refine": lambda b, hw, tmp: mixing.refine(lambda x, sigma: x * 0, torch.randn(b, 4, *hw),
                                             torch.linspace(0.5, 0, 3), prediction="flow", disable=True),
    "fit_factors": lambda b, hw, tmp: fit_factors([(torch.randn(b, 4, *hw), torch.rand(b, 3, *hw))]),
    "save_latent": lambda b, hw, tmp: io.save_latent(tmp / "e.safetensors", torch.randn(b, 4, *hw), space="sd1"),
    "save_image": lambda b, hw, tmp: io.save_image(tmp / "e.png", torch.rand(b, 3, *hw)),
    "save_animation": lambda b, hw, tmp: io.save_animation(tmp / "e.webp", [torch.rand(b, 3, *hw)]),
}


@pytest.mark.parametrize("shape", list(EMPTY.values()), ids=list(EMPTY))
@pytest.mark.parametrize("call", list(CALLS.values()), ids=list(CALLS))
def test_every_public_function_refuses_empty_tensors_with_one_clear_error(call, shape, tmp_path, monkeypatch):
    monkeypatch.setattr(tiny, "load", lambda *a, **k: _tiny())  # preview's tiny method: no weight file needed
    with pytest.raises(InputError, match=r"is empty \(shape \(") as e:
        call(shape[0], shape[1:], tmp_path)
    assert "at least one batch item" in str(e.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size", [0, -5, (0, 0), (-1, 5), (4,), 2.5, float("nan"), float("inf"), "big"])
def test_preview_refuses_sizes_that_are_not_positive_whole_pixels(size):
    with pytest.raises(InputError, match="size="):
        preview.preview(torch.randn(1, 4, 8, 8), "sd1", size=size)


@pytest.mark.parametrize("value", [0, -3, 1.5, True, "2", None])
def test_check_whole_refuses_anything_but_a_whole_number_in_range_naming_the_parameter(value):
    with pytest.raises(InputError, match=f"chunk={value!r} is not a whole number of latent frames >= 1"):
        limits.check_whole("chunk", value, unit="latent frames")


def test_check_whole_gives_the_number_back_and_names_an_upper_bound():
    assert limits.check_whole("quality", 100, maximum=100) == 100
    with pytest.raises(InputError, match="quality=101 is not a whole number from 1 to 100"):
        limits.check_whole("quality", 101, maximum=100)


@pytest.mark.parametrize(("default", "text", "want"), [(5, "1e3", 1000), (5, "1_000", 1000), (5.0, "2.5", 2.5)])
def test_a_setting_reads_numbers_from_the_environment_when_called(monkeypatch, default, text, want):
    monkeypatch.setenv("LATENTBRIDGE_TEST_SETTING", text)
    assert limits.setting("LATENTBRIDGE_TEST_SETTING", default) == want


@pytest.mark.parametrize(("default", "text"), [(5, "2.5"), (5, "0"), (5, "inf"), (5, "two"), (5.0, "-1"), (5.0, "nan")])
def test_a_setting_that_is_no_number_in_range_is_refused_by_name(monkeypatch, default, text):
    monkeypatch.setenv("LATENTBRIDGE_TEST_SETTING", text)
    with pytest.raises(InputError, match=r"\$LATENTBRIDGE_TEST_SETTING="):
        limits.setting("LATENTBRIDGE_TEST_SETTING", default)
