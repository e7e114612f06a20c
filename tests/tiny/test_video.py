"""Tiny video autoencoders through ``tiny.load``: parity with upstream's taehv.py / taesdv.py, streaming, spaces."""

import shutil

import pytest
import torch
from safetensors.torch import save_file

from latentbridge import spaces, tiny
from latentbridge.errors import AmbiguousError, InputError, WeightsFormatError
from latentbridge.tiny.video import TinyVideoAutoencoder

from .taehv_reference import LAYOUTS, build, random_state, reference, reference_decode, reference_encode, saturated

SPACES = {"taew2_1": "wan21", "taew2_2": "wan22", "taeltx_2": "ltxv", "taehv1_5": "hunyuanvideo15",
          "taew2_2_super": "wan22", "taeltx2_3_wide": "ltxv", "taecvx": "cogvideox", "taesdv": "sd1"}
REQUIRED = ["taew2_1", "taew2_2", "taeltx_2"]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Random-weight files in the upstream layouts, built once per module: name -> (.pth path, reference model)."""
    folder = tmp_path_factory.mktemp("taehv")
    built: dict = {}

    def get(name: str):
        if name not in built:
            built[name] = build(name, folder)
        return built[name]

    return get


def _latent(model: TinyVideoAutoencoder, frames: int = 3, size: int = 2) -> torch.Tensor:
    return torch.randn(1, model.latent_channels, frames, size, size)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
@pytest.mark.parametrize("name", [*REQUIRED, "taehv1_5", "taew2_2_super"])
def test_decode_and_encode_match_taehv_py(published, name, fmt):
    path, ref = published(name)
    m = tiny.load(path if fmt == "pth" else path.parent / "safetensors" / f"{name}.safetensors")
    assert isinstance(m, TinyVideoAutoencoder) and m.space.id == SPACES[name] and m.name == name
    z = _latent(m)  # T = 3 latent frames, never equal to C
    want = reference_decode(ref, z)
    got = m.decode(z)
    d = m.downscale
    assert got.shape == (1, 3, 1 + 2 * m.time_upscale, 2 * d, 2 * d) == want.shape
    assert saturated(want) < 0.05 and want.std() > 0.05
    assert (got - want).abs().max() < 1e-4
    frames = torch.rand(1, 3, 2 + m.time_downscale, 2 * d, 2 * d)  # not a multiple of the time factor: padded
    latent = m.encode(frames)
    expected = reference_encode(ref, frames)
    assert latent.shape == expected.shape == (1, m.latent_channels, 2, 2, 2)
    assert expected.std() > 0.05 and (latent - expected).abs().max() < 1e-4


@pytest.mark.parametrize("name", REQUIRED)
def test_chunked_decode_equals_the_whole_decode(published, name):
    m = tiny.load(published(name)[0])
    z = _latent(m, frames=5)
    whole = m.decode(z)
    assert whole.shape[2] == 1 + 4 * m.time_upscale
    assert (m.decode(z, chunk=2) - whole).abs().max() < 1e-6
    pieces = list(m.stream(z, chunk=2))
    assert len(pieces) == 3 and (torch.cat(pieces, 2) - whole).abs().max() < 1e-6


def test_chunked_encode_equals_the_whole_encode(published):
    m = tiny.load(published("taew2_1")[0])
    frames = torch.rand(1, 3, 13, 16, 16)
    assert (m.encode(frames, chunk=2) - m.encode(frames)).abs().max() < 1e-6


@pytest.mark.parametrize("name", ["taew2_1", "taeltx_2"])
def test_preview_matches_taehv_py_with_time_and_space_upscaling_off(published, name):
    path, _ = published(name)
    options = {**LAYOUTS[name][1], "decoder_time_upscale": (False,) * 3, "decoder_space_upscale": (False,) * 3}
    cheap = reference("taehv").TAEHV(checkpoint_path=None, **options).eval()
    cheap.load_state_dict(cheap.patch_tgrow_layers(torch.load(path, weights_only=True)))
    m = tiny.load(path)
    z = _latent(m)
    got = m.preview(z)
    assert got.shape == (1, 3, 3, 2 * m.layout.patch, 2 * m.layout.patch)
    assert (got - reference_decode(cheap, z)).abs().max() < 1e-4


def test_wide_decoder_matches_the_wide_branch(published):
    path, ref = published("taeltx2_3_wide")
    m = tiny.load(path)
    assert (m.variant, m.space.id, m.time_upscale) == ("taehv_wide", "ltxv", 8)
    z = _latent(m, frames=2, size=1)
    want = reference_decode(ref, z)
    assert saturated(want) < 0.05 and (m.decode(z) - want).abs().max() < 1e-4


def test_taesdv_decodes_sd1_latents_as_video(published):
    path, ref = published("taesdv")
    m = tiny.load(path)
    assert (m.variant, m.space.id, m.time_downscale, m.time_upscale) == ("taesdv", "sd1", 1, 1)
    z = _latent(m, frames=3, size=4)
    want = reference_decode(ref, z)
    assert saturated(want) < 0.05 and (m.decode(z) - want).abs().max() < 1e-4
    frames = torch.rand(1, 3, 2, 32, 32)
    assert (m.encode(frames) - reference_encode(ref, frames)).abs().max() < 1e-4
    raw = z / spaces.get("sd1").scaling_factor  # the raw domain converts frame by frame
    assert (m.decode(raw, domain="raw") - m.decode(z)).abs().max() < 1e-5


def test_taecvx_keeps_every_frame_of_an_even_number_of_latent_frames(published):
    path, ref = published("taecvx")
    m = tiny.load(path)
    assert m.space.id == "cogvideox"
    for frames, expected in ((4, 16), (3, 9)):
        z = _latent(m, frames=frames)
        got = m.decode(z)
        assert got.shape[2] == expected == m.decoded_frames(frames)
        assert (got - reference_decode(ref, z)).abs().max() < 1e-4


def test_a_stored_doubling_first_tgrow_loads_as_upstream_does(tmp_path):
    ref = reference("taehv")
    doubling = ref.TAEHV(checkpoint_path=None, decoder_time_upscale=(True, True, True)).state_dict()
    path = tmp_path / "taew2_1.pth"
    torch.save(random_state(doubling, torch.Generator().manual_seed(3)), path)
    upstream = ref.TAEHV(checkpoint_path=str(path)).eval()  # keeps the first TGrow's last output channels
    m = tiny.load(path)
    assert (m.time_downscale, m.time_upscale) == (4, 4)
    z = _latent(m)
    assert (m.decode(z) - reference_decode(upstream, z)).abs().max() < 1e-4


def test_shared_keys_under_another_name_ask_for_the_space(published, tmp_path):
    renamed = tmp_path / "my_video_vae.pth"
    shutil.copy(published("taew2_1")[0], renamed)
    with pytest.raises(AmbiguousError, match=r"space=.*taew2_1\.pth"):
        tiny.load(renamed)
    assert tiny.load(renamed, space="hunyuanvideo").space.id == "hunyuanvideo"


def test_metadata_names_the_space_of_a_renamed_file(published, tmp_path):
    state = torch.load(published("taew2_1")[0], weights_only=True)
    path = tmp_path / "anything.safetensors"
    save_file(state, str(path), metadata={"latentbridge.space": "cogvideox"})
    assert tiny.load(path).space.id == "cogvideox"


def test_layouts_of_one_space_are_known_by_their_keys_under_any_name(published, tmp_path):
    for name in ("taew2_2", "taeltx_2"):
        renamed = tmp_path / f"renamed_{name}.pth"
        shutil.copy(published(name)[0], renamed)
        assert tiny.load(renamed).space.id == SPACES[name]


def test_load_by_published_name_from_a_models_folder(published):
    path, _ = published("taew2_1")
    m = tiny.load("taew2_1", models_dir=path.parent)
    assert (m.name, m.space.id, m.latent_channels) == ("taew2_1", "wan21", 16)


def test_a_space_that_does_not_fit_the_weights_is_refused(published):
    with pytest.raises(WeightsFormatError, match="cannot serve wan21"):
        tiny.load(published("taew2_2")[0], space="wan21")


def test_minimax_h3_layout_is_refused_not_decoded_wrongly(tmp_path):
    state = reference("taehv").TAEHV(checkpoint_path=None, patch_size=2, latent_channels=24).state_dict()
    torch.save(state, tmp_path / "mystery.pth")
    with pytest.raises(WeightsFormatError, match="taeh3"):
        tiny.load(tmp_path / "mystery.pth")


def test_a_damaged_file_names_what_is_missing(published, tmp_path):
    state = torch.load(published("taew2_1")[0], weights_only=True)
    del state["decoder.9.conv.2.weight"]
    torch.save(state, tmp_path / "taew2_1.pth")
    with pytest.raises(WeightsFormatError, match=r"missing 9\.conv\.2\.weight"):
        tiny.load(tmp_path / "taew2_1.pth")


def test_domains_convert_video_latents(published):
    m = tiny.load(published("taew2_1")[0])
    z = _latent(m)
    assert (m.decode(z, domain="model") - m.decode(z)).abs().max() < 1e-6  # Wan's taesd domain is its model domain
    raw = spaces.convert_domain(z, "wan21", "model", "raw")
    assert (m.decode(raw, domain="raw") - m.decode(z)).abs().max() < 1e-5
    frames = torch.rand(1, 3, 5, 16, 16)
    assert (m.encode(frames, domain="raw") - spaces.convert_domain(m.encode(frames), "wan21", "taesd", "raw")).abs().max() < 1e-5


def test_bad_inputs_get_one_clear_error(published):
    m = tiny.load(published("taew2_1")[0])
    with pytest.raises(InputError, match=r"unsqueeze\(2\)"):
        m.decode(torch.randn(1, 16, 2, 2))
    with pytest.raises(InputError, match="16 channels"):
        m.decode(torch.randn(1, 4, 3, 2, 2))
    with pytest.raises(InputError, match="empty"):
        m.decode(torch.randn(1, 16, 0, 2, 2))
    with pytest.raises(InputError, match="chunk=0 is not a whole number of latent frames >= 1"):
        m.decode(_latent(m), chunk=0)
    with pytest.raises(InputError, match="multiple of 8"):
        m.encode(torch.rand(1, 3, 5, 12, 16))
    assert m.encode(torch.rand(1, 3, 5, 12, 16), fit="pad").shape == (1, 16, 2, 2, 2)


def test_a_decode_above_the_pixel_limit_is_refused_before_it_runs(published, monkeypatch):
    m = tiny.load(published("taew2_1")[0])
    monkeypatch.setenv("LATENTBRIDGE_MAX_PIXELS", str(5 * 16 * 16))  # 5 frames of 16x16 fit, 9 do not
    assert m.decode(_latent(m, frames=2)).shape[2] == 5
    with pytest.raises(InputError, match="the decoded clip would stand for 9 images of 16x16"):
        m.decode(_latent(m, frames=3))
    assert m.preview(_latent(m, frames=3)).shape == (1, 3, 3, 2, 2)


def test_gradients_flow_through_the_plain_modules_with_the_same_numbers(published):
    m = tiny.load(published("taew2_1")[0])
    z = _latent(m).requires_grad_(True)
    out = m.decode(z)
    out.mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert (out.detach() - m.decode(z.detach())).abs().max() < 1e-5
