import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tests.contract import snapshot
from tests.io.hostile import LATENT, LATENT_FILES

from latentbridge import io, spaces
from latentbridge.errors import InputError
from latentbridge.io import latents


def test_comfyui_latent_with_marker_loads_as_raw(tmp_path):
    x = torch.randn(1, 4, 8, 8)
    path = tmp_path / "ComfyUI_00001_.latent"
    save_file({"latent_tensor": x, "latent_format_version_0": torch.tensor([])}, str(path), metadata={"prompt": "{}"})
    lf = io.load_latent(path)
    torch.testing.assert_close(lf.tensor, x)
    assert lf.domain == "raw" and lf.format == "comfyui"


def test_legacy_comfyui_latent_without_marker_gets_the_sd1_scale(tmp_path):
    x = torch.randn(1, 4, 8, 8)
    path = tmp_path / "old.latent"
    save_file({"latent_tensor": x}, str(path))
    lf = io.load_latent(path)
    torch.testing.assert_close(lf.tensor, x / 0.18215)
    assert (lf.space, lf.domain, lf.format) == ("sd1", "raw", "comfyui-legacy")


@pytest.mark.parametrize("suffix", [".safetensors", ".latent", ".npy", ".pt"])
def test_save_then_load_round_trips_every_format(tmp_path, suffix):
    x = torch.randn(2, 16, 8, 8)
    path = io.save_latent(tmp_path / f"a{suffix}", x, space="flux1", domain="raw")
    lf = io.load_latent(path)
    torch.testing.assert_close(lf.tensor.float(), x)
    if suffix in (".safetensors", ".latent"):
        assert (lf.space, lf.domain) == ("flux1", "raw")
        assert lf.metadata["latentbridge.producer"].startswith("latentbridge")


def test_save_to_comfyui_latent_converts_to_raw(tmp_path):
    m = torch.randn(1, 4, 8, 8)
    path = io.save_latent(tmp_path / "a.latent", m, space="sdxl", domain="model")
    lf = io.load_latent(path)
    torch.testing.assert_close(lf.tensor, m / 0.13025)
    assert lf.domain == "raw"


def test_save_keeps_extras_such_as_noise_mask(tmp_path):
    mask = torch.ones(1, 1, 8, 8)
    path = io.save_latent(tmp_path / "a.safetensors", torch.randn(1, 4, 8, 8), extras={"noise_mask": mask})
    torch.testing.assert_close(io.load_latent(path).extras["noise_mask"], mask)


def test_save_refuses_to_clobber_an_existing_file(tmp_path):
    path = tmp_path / "a.safetensors"
    path.write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists"):
        io.save_latent(path, torch.randn(1, 4, 8, 8))
    assert path.read_bytes() == b"precious"
    io.save_latent(path, torch.randn(1, 4, 8, 8), overwrite=True)
    assert io.load_latent(path).tensor.shape == (1, 4, 8, 8)


def test_save_refuses_nan_and_writes_nothing(tmp_path):
    x = torch.randn(1, 4, 8, 8)
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(InputError, match="NaN or infinite"):
        io.save_latent(tmp_path / "a.safetensors", x)
    assert list(tmp_path.iterdir()) == []


def test_save_with_wrong_channels_for_the_space_is_refused(tmp_path):
    with pytest.raises(InputError, match="C=16"):
        io.save_latent(tmp_path / "a.safetensors", torch.randn(1, 4, 8, 8), space="sd3")
    assert list(tmp_path.iterdir()) == []


def test_save_into_a_missing_folder_says_so(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        io.save_latent(tmp_path / "no" / "a.safetensors", torch.randn(1, 4, 8, 8))


def test_truncated_safetensors_gets_a_clear_error(tmp_path):
    good = io.save_latent(tmp_path / "a.safetensors", torch.randn(1, 4, 32, 32))
    bad = tmp_path / "b.safetensors"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError, match="truncated"):
        io.load_latent(bad)


def test_text_file_named_safetensors_is_rejected(tmp_path):
    bad = tmp_path / "b.safetensors"
    bad.write_text("hello")
    with pytest.raises(InputError, match="not a readable safetensors"):
        io.load_latent(bad)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"samples": torch.randn(1, 4, 8, 8), "x": Evil()}, path)
    with pytest.raises(InputError, match="would run code"):
        io.load_latent(path)


def test_object_npy_is_refused(tmp_path):
    path = tmp_path / "o.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="pickle"):
        io.load_latent(path)


def test_stated_space_overrides_missing_metadata(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((1, 4, 8, 8), np.float32))
    lf = io.load_latent(path, space="xl", domain="model")
    assert (lf.space, lf.domain) == ("sdxl", "model")


def test_unknown_extension_is_rejected(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match="unknown latent file type"):
        io.load_latent(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".latent"])
def test_video_latents_round_trip_with_their_frames_space_and_dtype(tmp_path, suffix):
    x = torch.randn(2, 16, 5, 4, 6, dtype=torch.bfloat16)  # T=5 differs from C=16
    path = io.save_latent(tmp_path / f"v{suffix}", x, space="wan21", domain="raw")
    lf = io.load_latent(path)
    assert torch.equal(lf.tensor, x)
    assert (lf.space, lf.domain) == ("wan21", "raw")
    assert lf.metadata["latentbridge.shape"] == "[2, 16, 5, 4, 6]"


def test_video_latent_in_the_model_domain_is_written_raw_to_comfyui_and_converts_back(tmp_path):
    model = torch.randn(1, 16, 3, 4, 4)
    lf = io.load_latent(io.save_latent(tmp_path / "v.latent", model, space="wan21", domain="model"))
    assert lf.tensor.shape == (1, 16, 3, 4, 4) and (lf.space, lf.domain) == ("wan21", "raw")
    torch.testing.assert_close(spaces.convert_domain(lf.tensor, "wan21", "raw", "model"), model, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("suffix", [".safetensors", ".latent"])
def test_the_real_wan_latent_round_trips_with_shape_and_space(tmp_path, suffix, wan_latent):
    path = io.save_latent(tmp_path / f"wan{suffix}", wan_latent, space="wan21", domain="model")
    lf = io.load_latent(path)
    assert lf.tensor.shape == (1, 16, 16, 40, 64) and lf.space == "wan21"
    back = spaces.convert_domain(lf.tensor.float(), "wan21", lf.domain, "model")
    torch.testing.assert_close(back, wan_latent.float(), atol=0.05, rtol=0.02)  # bfloat16 through the raw domain


@pytest.mark.parametrize("case", sorted(LATENT_FILES))
def test_hostile_latent_files_raise_input_error_naming_the_problem(tmp_path, case):
    make, words = LATENT_FILES[case]
    path = make(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match=re.escape(words)) as caught:
        io.load_latent(path)
    assert str(path) in str(caught.value)
    if case.startswith("truncated"):
        assert "pickle" not in str(caught.value)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">f2", "<f4"])
def test_npy_of_either_byte_order_loads_the_same_values(tmp_path, dtype):
    np.save(tmp_path / "x.npy", LATENT.astype(dtype))
    lf = io.load_latent(tmp_path / "x.npy")
    torch.testing.assert_close(lf.tensor.double(), torch.from_numpy(LATENT.astype(dtype).astype(np.float64)))


def test_fortran_ordered_npy_keeps_its_layout(tmp_path):
    np.save(tmp_path / "x.npy", np.asfortranarray(LATENT))
    torch.testing.assert_close(io.load_latent(tmp_path / "x.npy").tensor, torch.from_numpy(LATENT))


def test_a_too_big_npy_is_refused_from_its_header(tmp_path, monkeypatch):
    monkeypatch.setattr(latents, "MAX_FILE_BYTES", 1000)
    np.save(tmp_path / "x.npy", LATENT)
    with pytest.raises(InputError, match="more than a latent file can"):
        io.load_latent(tmp_path / "x.npy")


def test_saving_a_dtype_latents_cannot_have_is_refused(tmp_path):
    with pytest.raises(InputError, match="float8"):
        io.save_latent(tmp_path / "x.safetensors", torch.zeros(1, 4, 8, 8, dtype=torch.float8_e4m3fn))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("tensor", "options", "words"), [
    (LATENT, {}, "got ndarray"),
    (torch.tensor(1.0), {}, "single number"),
    (torch.randn(1, 4, 8, 8), {"metadata": {"a": 1}}, "strings to strings"),
    (torch.randn(1, 4, 8, 8), {"extras": {"mask": [1, 2]}}, "to tensors"),
    (torch.randn(1, 4, 8, 8), {"extras": {"latent": torch.zeros(1)}}, "would replace the latent"),
    (torch.randn(1, 4, 8, 8), {"extras": {"samples": torch.zeros(1)}}, "would replace the latent"),
])
def test_save_latent_refuses_arguments_it_cannot_write_faithfully(tmp_path, tensor, options, words):
    with pytest.raises(InputError, match=re.escape(words)):
        io.save_latent(tmp_path / "x.pt", tensor, **options)
    assert list(tmp_path.iterdir()) == []
