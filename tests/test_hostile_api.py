"""Misuse of the Python API that a wider hostile-input audit found: each raises the project's InputError (never a
bare TypeError, AttributeError or torch error) and leaves the caller's tensors and files as they were."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from latentbridge import io
from latentbridge.errors import InputError

LATENT = torch.randn(1, 4, 8, 8)

PATHS = {  # a path argument that is not a path
    "load_latent None": lambda tmp: io.load_latent(None),
    "load_latent int": lambda tmp: io.load_latent(5),
    "load_latent bytes": lambda tmp: io.load_latent(b"x.safetensors"),
    "load_latent NUL": lambda tmp: io.load_latent("a\0b.safetensors"),
    "load_image None": lambda tmp: io.load_image(None),
    "save_latent None": lambda tmp: io.save_latent(None, LATENT),
    "save_latent empty": lambda tmp: io.save_latent("", LATENT),
    "save_image None": lambda tmp: io.save_image(None, torch.rand(1, 3, 8, 8)),
}

IMAGES = {  # images that save_image cannot write faithfully
    "None": (None, {}),
    "text": ("abc", {}),
    "8-bit integers": (torch.full((1, 3, 8, 8), 200, dtype=torch.uint8), {}),
    "meta tensor": (torch.empty(1, 3, 8, 8, device="meta"), {}),
    "nrow 0": (torch.rand(2, 3, 8, 8), {"nrow": 0}),
    "nrow -1": (torch.rand(2, 3, 8, 8), {"nrow": -1}),
    "nrow 1.5": (torch.rand(2, 3, 8, 8), {"nrow": 1.5}),
}


@pytest.mark.parametrize("case", sorted(PATHS))
def test_a_path_that_is_not_a_path_is_an_input_error(tmp_path, case):
    with pytest.raises(InputError, match="file path|file name"):
        PATHS[case](tmp_path)


@pytest.mark.parametrize("case", sorted(IMAGES))
def test_save_image_refuses_what_it_cannot_write(tmp_path, case):
    images, options = IMAGES[case]
    with pytest.raises(InputError):
        io.save_image(tmp_path / "x.png", images, **options)
    assert list(tmp_path.iterdir()) == []


def test_upscale_size_takes_whole_numbers_only():
    from latentbridge import upscale

    for size in ("64", (8.5, 8)):  # text was read as (6, 4); 8.5 was cut to 8
        with pytest.raises(InputError, match="whole numbers"):
            upscale.upscale(LATENT, "sd1", size=size, method="bilinear")
    assert upscale.upscale(LATENT, "sd1", size=torch.Size([16, 16]), method="bilinear").shape == (1, 4, 16, 16)


@pytest.mark.parametrize("scale", ["22", True, (True, 2), ("2", "2")])
def test_upscale_scale_takes_numbers_only(scale):
    from latentbridge import upscale

    with pytest.raises(InputError, match="scale="):  # the text "22" was read as (2, 2), True as 1
        upscale.upscale(LATENT, "sd1", scale, method="bilinear")


def test_an_upscale_scale_too_large_to_have_a_size_is_an_input_error():
    from latentbridge import upscale

    with pytest.raises(InputError, match="too large"):  # an OverflowError before
        upscale.upscale(LATENT, "sd1", 1e308, method="bilinear")


def _meta_calls(model_file):
    from latentbridge import interposer, preview, spaces, tiny, upscale
    from latentbridge.preview.fit import fit_factors

    meta = torch.empty(1, 4, 8, 8, device="meta")
    model = tiny.load(model_file)
    return {
        "preview": lambda: preview.preview(meta, "sd1"),
        "upscale": lambda: upscale.upscale(meta, "sd1", 2, method="bilinear"),
        "interposer.convert": lambda: interposer.convert(meta, "sd1", "sd1"),
        "spaces.detect": lambda: spaces.detect(meta),
        "spaces.convert_domain": lambda: spaces.convert_domain(meta, "sd1", "raw", "model"),
        "io.save_latent": lambda: io.save_latent("unused.safetensors", meta),
        "tiny decode": lambda: model.decode(meta),
        "tiny encode": lambda: model.encode(torch.empty(1, 3, 64, 64, device="meta")),
        "fit_factors": lambda: fit_factors([(meta, torch.rand(1, 3, 64, 64))]),
    }


@pytest.mark.parametrize("call", ["preview", "upscale", "interposer.convert", "spaces.detect", "spaces.convert_domain",
                                  "io.save_latent", "tiny decode", "tiny encode", "fit_factors"])
def test_a_meta_tensor_is_refused_as_holding_no_values(call, model_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="meta device hold no values"):
        _meta_calls(model_file)[call]()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pairs", [
    None, LATENT, [(LATENT, torch.rand(1, 3, 64, 64), 1)], [(None, torch.rand(1, 3, 64, 64))],
    [(torch.full((1, 4, 8, 8), float("nan")), torch.rand(1, 3, 64, 64))],  # torch's lstsq failed an internal assert
    [(LATENT, torch.full((1, 3, 64, 64), float("inf")))],
    [(LATENT.long(), torch.rand(1, 3, 64, 64))], [(LATENT.to(torch.complex64), torch.rand(1, 3, 64, 64))],
], ids=["None", "a tensor", "a triple", "None latent", "NaN latent", "inf image", "integer latent", "complex latent"])
def test_fit_factors_refuses_pairs_it_cannot_fit(pairs):
    from latentbridge.preview.fit import fit_factors

    with pytest.raises(InputError):
        fit_factors(pairs)


def test_fit_factors_names_an_unknown_space():
    from latentbridge.errors import UnknownSpaceError
    from latentbridge.preview.fit import fit_factors

    with pytest.raises(UnknownSpaceError):
        fit_factors([(LATENT, torch.rand(1, 3, 64, 64))], space="bogus")


def test_spaces_lookups_refuse_what_is_not_a_name_or_a_mapping():
    from latentbridge import spaces
    from latentbridge.errors import UnknownSpaceError

    with pytest.raises(UnknownSpaceError, match="named by a str"):  # a TypeError (unhashable) before
        spaces.get(["sd1"])
    with pytest.raises(InputError, match="hints="):
        spaces.detect(LATENT, hints="sd1")
    for tensor in (None, "abc", [[1.0]]):
        with pytest.raises(InputError, match="torch.Tensor"):
            spaces.detect(tensor)


def _misuse():
    from latentbridge import interposer, mixing, preview, spaces, tiny, upscale
    from latentbridge.train import build_dataset
    from latentbridge.train.encoders import Encoder

    photo = str(Path(__file__).resolve().parents[1] / "src" / "latentbridge" / "data" / "examples" / "bee.jpg")
    encoder = Encoder("zeros", "zeros", spaces.get("sd1"), "model", lambda x: torch.zeros(len(x), 4, 8, 8))
    return {  # each raised a bare TypeError, FileNotFoundError or AttributeError before
        "preview factors missing": lambda: preview.preview(LATENT, "sd1", factors="missing.safetensors"),
        "preview factors a number": lambda: preview.preview(LATENT, "sd1", factors=5),
        "upscale model a number": lambda: upscale.upscale(LATENT, "sd1", 2, model=5),
        "convert models_dir a number": lambda: interposer.convert(LATENT, "sd1", "sdxl", models_dir=5),
        "tiny.load None": lambda: tiny.load(None),
        "tiny.load a number": lambda: tiny.load(5),
        "tiny.load three files": lambda: tiny.load(["a", "b", "c"]),
        "mixing sigmas text": lambda: mixing.sample(lambda z, s: z * 0, LATENT, "abc"),
        "mixing sigmas ragged": lambda: mixing.sample(lambda z, s: z * 0, LATENT, [[1.0], [0.5, 0.1]]),
        "mixing no denoiser": lambda: mixing.sample(None, LATENT, [1.0, 0.0]),
        "mixing callback not callable": lambda: mixing.sample(lambda z, s: z * 0, LATENT, [1.0, 0.0], callback=5),
        "mixing meta noise": lambda: mixing.sample(lambda z, s: z * 0, LATENT, [1.0, 0.0],
                                                   noise=torch.empty(1, 4, 8, 8, device="meta")),
        "mixing integer noise": lambda: mixing.sample(lambda z, s: z * 0, LATENT, [1.0, 0.0],
                                                      noise=torch.ones(1, 4, 8, 8, dtype=torch.int64)),
        "mixing meta reference": lambda: mixing.sample(lambda z, s: z * 0, torch.empty(1, 4, 8, 8, device="meta"),
                                                       [1.0, 0.0]),
        "build_dataset encoder names": lambda: build_dataset([photo], ["taef2"], "ds"),
        "build_dataset a folder as images": lambda: build_dataset(str(Path(photo).parent), [encoder], "ds"),
    }


@pytest.mark.parametrize("case", sorted(_misuse()))
def test_misuse_of_the_python_api_is_an_input_error(case, tmp_path, monkeypatch):
    from latentbridge.errors import LatentBridgeError

    calls = _misuse()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LatentBridgeError):
        calls[case]()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("quality", [-1, 0, 101, 1000, 1.5, True])
def test_image_quality_outside_1_to_100_is_refused_before_writing(tmp_path, quality):
    for write in (lambda: io.save_image(tmp_path / "x.jpg", torch.rand(1, 3, 8, 8), quality=quality),
                  lambda: io.save_images([tmp_path / "y.webp"], torch.rand(1, 3, 8, 8), quality=quality)):
        with pytest.raises(InputError, match="quality="):
            write()
    assert list(tmp_path.iterdir()) == []


def test_save_latent_refuses_metadata_that_is_not_a_mapping(tmp_path):
    with pytest.raises(InputError, match="metadata="):  # an AttributeError before
        io.save_latent(tmp_path / "x.safetensors", LATENT, metadata="abc")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("images", [torch.rand(1, 3, 64, 64) * 255, torch.rand(1, 3, 64, 64) * 2 - 1,
                                    torch.full((1, 3, 64, 64), float("nan"))], ids=["8-bit levels", "[-1, 1]", "NaN"])
def test_tiny_encode_refuses_pictures_outside_0_1_instead_of_encoding_garbage(model_file, images):
    from latentbridge import tiny

    with pytest.raises(InputError, match=r"in \[0, 1\]"):
        tiny.load(model_file).encode(images)


def test_preview_refuses_factors_fitted_for_another_space_with_the_same_channels():
    from latentbridge import preview
    from latentbridge.preview import fit_factors

    fitted = fit_factors([(torch.randn(2, 32, 8, 8), torch.rand(2, 3, 64, 64))], forms=("affine",), space="flux2")
    with pytest.raises(InputError, match="fitted for flux2, not sana"):  # Sana latents have 32 channels too
        preview.preview(torch.randn(1, 32, 8, 8), "sana", method="linear", domain="taesd", factors=fitted["affine"])


def test_detect_refuses_an_image_size_hint_that_is_not_a_pair_of_whole_numbers():
    from latentbridge import spaces

    for size in ("abc", (64,), (64.5, 64)):
        with pytest.raises(InputError, match="image_size"):  # a ValueError from unpacking before
            spaces.detect(LATENT, hints={"image_size": size})


def test_list_images_refuses_a_folder_that_is_not_a_path():
    with pytest.raises(InputError, match="file path"):
        io.list_images(None)


def test_a_meta_device_is_refused_where_models_would_run():
    from latentbridge import devices

    with pytest.raises(InputError, match="device='meta' holds no data"):
        devices.resolve("meta")


def test_a_resize_target_beyond_the_pixel_limit_is_refused_before_reading(tmp_path):
    from latentbridge import io

    path = io.save_image(tmp_path / "a.png", torch.rand(1, 3, 8, 8))
    with pytest.raises(InputError, match="LATENTBRIDGE_MAX_PIXELS"):
        io.load_image(path, size=10**9)


def test_a_preview_of_a_huge_expanded_batch_is_refused_before_it_is_computed():
    from latentbridge import preview

    with pytest.raises(InputError, match="fewer latents at a time"):
        preview.preview(torch.randn(1, 4, 1, 1).expand(10**6, 4, 32, 32), "sd1")


@pytest.mark.parametrize("eta", [-1, float("nan"), float("inf"), "1"])
def test_an_ancestral_noise_amount_that_is_no_finite_number_at_least_0_is_refused(eta):
    from latentbridge import mixing

    with pytest.raises(InputError, match="eta="):
        mixing.run_sampler("euler_ancestral", lambda x, s, **k: x, torch.randn(1, 4, 4, 4), torch.tensor([1.0, 0.0]),
                           eta=eta)
