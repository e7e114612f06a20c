"""Every layout TAESD weights travel in, built at test time from the real files (never committed)."""

import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tests.conftest import shared_file

from latentbridge import tiny
from latentbridge.errors import WeightsFormatError
from latentbridge.tiny import layouts


def _halves() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    load = lambda name: torch.load(shared_file(name), map_location="cpu", weights_only=True)  # noqa: E731
    return load("taef2_encoder.pth"), load("taef2_decoder.pth")


def _save(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    else:
        torch.save(tensors, path)
    return path


def _prefixed(enc, dec, enc_prefix, dec_prefix, shift=0):
    out = {enc_prefix + k: v for k, v in enc.items()}
    for k, v in dec.items():
        index, rest = k.split(".", 1)
        out[f"{dec_prefix}{int(index) - shift}.{rest}"] = v
    return out


def _assert_same_weights(model, enc, dec):
    for half, want in (("encoder", enc), ("decoder", dec)):
        if want is None:
            assert getattr(model, half) is None
            continue
        got = getattr(model, half).state_dict()
        assert set(got) == set(want)
        for k, v in want.items():
            torch.testing.assert_close(got[k], v.float(), rtol=0, atol=0)


LAYOUTS = {
    "prefixed": lambda e, d: _prefixed(e, d, "encoder.", "decoder."),
    "diffusers": lambda e, d: _prefixed(e, d, "encoder.layers.", "decoder.layers.", shift=1),
    "comfyui": lambda e, d: {**_prefixed(e, d, "taesd_encoder.", "taesd_decoder."),
                             "vae_scale": torch.tensor(1.0), "vae_shift": torch.tensor(0.0)},
    "compiled": lambda e, d: {"_orig_mod." + k: v for k, v in _prefixed(e, d, "encoder.", "decoder.").items()},
}


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_combined_layout_loads_both_halves(tmp_path, layout, suffix):
    enc, dec = _halves()
    path = _save(tmp_path / f"model{suffix}", LAYOUTS[layout](enc, dec))
    m = tiny.load(path)
    assert (m.variant, m.latent_channels, m.space.id) == ("flux_2", 32, "flux2")
    _assert_same_weights(m, enc, dec)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("half", ["encoder", "decoder"])
def test_flat_safetensors_half_loads_that_half(tmp_path, half, dtype):
    enc, dec = _halves()
    state = {k: v.to(dtype) for k, v in (enc if half == "encoder" else dec).items()}
    m = tiny.load(_save(tmp_path / "x.safetensors", state))
    _assert_same_weights(m, state if half == "encoder" else None, state if half == "decoder" else None)


def test_diffusers_layout_with_one_half(tmp_path):
    _, dec = _halves()
    m = tiny.load(_save(tmp_path / "d.safetensors", _prefixed({}, dec, "encoder.layers.", "decoder.layers.", 1)))
    assert m.has_decoder and not m.has_encoder
    _assert_same_weights(m, None, dec)


def test_state_dict_wrapper_is_unwrapped(tmp_path):
    enc, _ = _halves()
    m = tiny.load(_save(tmp_path / "wrapped.pth", {"state_dict": enc}))
    assert m.has_encoder and not m.has_decoder


def test_name_finds_a_combined_file(tmp_path):
    enc, dec = _halves()
    _save(tmp_path / "taef2.safetensors", LAYOUTS["diffusers"](enc, dec))
    m = tiny.load("taef2", models_dir=tmp_path)
    assert m.has_encoder and m.has_decoder and m.name == "taef2"


def test_name_half_taken_from_a_combined_file(tmp_path):
    enc, dec = _halves()
    _save(tmp_path / "taef2.safetensors", LAYOUTS["diffusers"](enc, dec))
    m = tiny.load("taef2_decoder", models_dir=tmp_path)
    assert m.has_decoder and not m.has_encoder


def test_comfyui_scale_and_shift_identify_the_space(tmp_path):
    torch.manual_seed(0)
    enc = {k: v for k, v in layouts.build("encoder", "standard", 16).state_dict().items()}
    dec = {k: v for k, v in layouts.build("decoder", "standard", 16).state_dict().items()}
    tensors = {**_prefixed(enc, dec, "taesd_encoder.", "taesd_decoder."),
               "vae_scale": torch.tensor(1.5305), "vae_shift": torch.tensor(0.0609)}
    m = tiny.load(_save(tmp_path / "taesd3_combined.pth", tensors))
    assert (m.variant, m.latent_channels, m.space.id) == ("standard", 16, "sd3")


def test_metadata_names_the_space(tmp_path):
    torch.manual_seed(0)
    dec = layouts.build("decoder", "standard", 4).state_dict()
    path = tmp_path / "d.safetensors"
    save_file(dec, str(path), metadata={"latentbridge.space": "sdxl"})
    assert tiny.load(path).space.id == "sdxl"


def test_diffusers_autoencoder_tiny_matches_numerically(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    ref = diffusers.AutoencoderTiny(latent_channels=4).eval()
    path = _save(tmp_path / "diffusion_pytorch_model.safetensors", ref.state_dict())
    m = tiny.load(path)
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        z = ref.encode(x * 2 - 1).latents
        torch.testing.assert_close(m.encode(x), z, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(m.decode(z), (ref.decode(z).sample + 1) / 2, atol=1e-5, rtol=1e-4)


def test_file_matching_no_layout_lists_expected_and_found(tmp_path):
    path = _save(tmp_path / "other.safetensors", {"unet.weight": torch.zeros(2), "unet.bias": torch.zeros(2)})
    with pytest.raises(WeightsFormatError, match=r"Expected upstream .pth keys.*found 2 keys: unet.bias, unet.weight"):
        tiny.load(path)


def test_missing_and_misshapen_keys_are_named(tmp_path):
    _, dec = _halves()
    broken = dict(dec)
    del broken["3.conv.0.weight"]
    broken["19.bias"] = torch.zeros(4)
    with pytest.raises(WeightsFormatError, match=r"missing \(3.conv.0.weight.*19.bias \(4,\) != \(3,\)"):
        tiny.load(_save(tmp_path / "broken.safetensors", broken))


def test_stray_keys_next_to_a_prefixed_layout_are_named(tmp_path):
    enc, dec = _halves()
    tensors = {**LAYOUTS["prefixed"](enc, dec), "ema.decay": torch.tensor([0.9])}
    with pytest.raises(WeightsFormatError, match="keys outside.*ema.decay"):
        tiny.load(_save(tmp_path / "x.safetensors", tensors))


def test_halves_that_do_not_belong_together(tmp_path):
    torch.manual_seed(0)
    dec4 = _save(tmp_path / "d4.safetensors", layouts.build("decoder", "standard", 4).state_dict())
    with pytest.raises(WeightsFormatError, match="do not belong together"):
        tiny.load([shared_file("taef2_encoder.pth"), dec4])


def test_corrupt_safetensors_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + bytes(64))
    with pytest.raises(WeightsFormatError, match="truncated or corrupt"):
        tiny.load(path)


def test_truncated_pth_is_a_clear_error(tmp_path):
    data = shared_file("taef2_decoder.pth").read_bytes()
    path = tmp_path / "taef2_decoder.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFormatError, match="truncated"):
        tiny.load(path)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("zipped", [True, False])
def test_pickle_that_would_run_code_is_refused(tmp_path, zipped):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    payload = {"0.weight": torch.zeros(1), "x": _RunsCode(marker)}
    if zipped:
        torch.save(payload, path)
        assert zipfile.is_zipfile(path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(WeightsFormatError, match="refusing|not a readable"):
        tiny.load(path)
    assert not marker.exists()
