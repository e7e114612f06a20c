import pytest
import torch
from safetensors.torch import save_file

from latentbridge import spaces, weights
from latentbridge.errors import InputError
from latentbridge.preview import MARKER, Previewer, PreviewerConfig, neural, preview, resize
from latentbridge.preview.neural import metadata
from latentbridge.train.cards import save_model

WITH_FACTORS = [s for s in spaces.all() if s.rgb_factors is not None]


def _latent(sp, h=6, w=4, batch=2, frames=3):
    shape = sp.latent_shape(h * sp.downscale, w * sp.downscale, domain="model", batch=batch)
    if sp.ndim == 5:
        shape = (*shape[:2], frames, *shape[3:])
    return torch.randn(shape)


@pytest.mark.parametrize("sp", WITH_FACTORS, ids=lambda s: s.id)
def test_preview_linear_gives_unit_range_at_latent_resolution(sp):
    x = _latent(sp)
    before = x.clone()
    out = preview(x, sp.id, method="linear")
    frames = (3,) if x.ndim == 5 else ()
    scale = sp.downscale // sp.taesd_downscale
    assert out.shape == (2, 3, *frames, 6 * scale, 4 * scale)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(x, before)


@pytest.mark.parametrize("sp", WITH_FACTORS, ids=lambda s: s.id)
def test_preview_raw_domain_equals_model_domain_of_the_converted_latent(sp):
    raw = _latent(sp) * 3
    model = spaces.convert_domain(raw, sp, "raw", "model")
    torch.testing.assert_close(preview(raw, sp, domain="raw"), preview(model, sp, domain="model"), atol=1e-5, rtol=0)


def test_preview_flux2_accepts_packed_and_unpacked():
    x = torch.randn(1, 128, 8, 6)
    packed = preview(x, "flux2")
    unpacked = preview(spaces.unpack(x), "flux2", domain="taesd")
    assert packed.shape == (1, 3, 16, 12)
    torch.testing.assert_close(packed, unpacked, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["linear", "neural"])
def test_preview_marks_nan_pixels_instead_of_failing(method, tmp_path):
    x = torch.randn(1, 128, 4, 4)
    x[0, 5, 1, 2] = float("nan")  # channel 5 = unpacked channel 1 at sub-pixel (0, 1)
    x[0, 0, 3, 3] = float("inf")
    kwargs = {"previewer": _tiny_previewer(tmp_path, "flux2")} if method == "neural" else {}
    out = preview(x, "flux2", method=method, **kwargs)
    marker = torch.tensor(MARKER).view(3)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, :, 2, 5], marker) and torch.equal(out[0, :, 6, 6], marker)
    assert int((out == marker.view(1, 3, 1, 1)).all(1).sum()) == 2


def test_preview_rejects_latents_that_fit_no_space():
    with pytest.raises(InputError, match="this one has 4"):
        preview(torch.randn(1, 4, 8, 8), "flux2")
    with pytest.raises(InputError, match="method"):
        preview(torch.randn(1, 4, 8, 8), "sd1", method="fancy")
    with pytest.raises(InputError, match="domain"):
        preview(torch.randn(1, 4, 8, 8), "sd1", domain="pixels")


def test_preview_size_resizes_longer_side_and_keeps_dtype():
    x = torch.randn(1, 4, 8, 12, dtype=torch.bfloat16)
    out = preview(x, "sd1", size=48)
    assert out.shape == (1, 3, 32, 48) and out.dtype == torch.bfloat16
    assert preview(x, "sd1", size=(5, 7)).shape == (1, 3, 5, 7)
    assert resize(torch.rand(1, 3, 64, 64), 16).shape == (1, 3, 16, 16)


def _tiny_previewer(tmp_path, space, storage="float32", **config):
    sp = spaces.get(space)
    cfg = PreviewerConfig(sp.taesd_channels, width=8, **config)
    net = Previewer(cfg)
    torch.nn.init.normal_(net.body[-1].weight, std=0.1)
    path = tmp_path / neural.file_name(space)
    save_model(path, net.state_dict(), metadata(cfg, space), "# test previewer\n", dtype=storage)
    return path


@pytest.mark.parametrize("scale", [1, 2])
def test_preview_neural_loads_by_path_and_sets_resolution(tmp_path, scale):
    path = _tiny_previewer(tmp_path, "sd3", scale=scale)
    out = preview(torch.randn(2, 16, 5, 3), "sd3", method="neural", previewer=path)
    assert out.shape == (2, 3, 5 * scale, 3 * scale) and 0 <= out.min() and out.max() <= 1


def test_neural_load_refuses_a_previewer_of_another_space(tmp_path):
    from latentbridge.errors import WeightsFormatError

    path = _tiny_previewer(tmp_path, "sd3")
    with pytest.raises(WeightsFormatError, match="previewer for sd3"):
        neural.load("flux1", path)


def test_neural_previewer_starts_as_its_affine_map():
    from latentbridge.preview import builtin

    f = builtin("sd1")
    net = Previewer(PreviewerConfig(4, width=8))
    net.init_affine(f.weight, f.bias)
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(net(x).clamp(0, 1), f.preview(x), atol=1e-5, rtol=0)


def test_packed_previewer_starts_as_its_packed_affine_map():
    from latentbridge.preview import fit_factors

    x, img = torch.randn(2, 32, 8, 8), torch.rand(2, 3, 64, 64)
    f = fit_factors([(x, img)], forms=("affine",), patch=2)["affine"]
    for scale in (1, 2):
        net = Previewer(PreviewerConfig(32, width=8, patch=2, scale=scale, context=1))
        net.init_affine(f.weight, f.bias)
        want = torch.nn.functional.interpolate(f.preview(x), scale_factor=scale, mode="nearest")
        torch.testing.assert_close(net(x).clamp(0, 1), want, atol=1e-5, rtol=0)


def test_neural_previewer_is_found_by_name_in_the_model_folders(tmp_path, monkeypatch):
    from latentbridge.errors import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="previewer-sd3.safetensors"):
        preview(torch.randn(1, 16, 4, 4), "sd3", method="neural")
    _tiny_previewer(tmp_path, "sd3")
    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(tmp_path))
    assert preview(torch.randn(1, 16, 4, 4), "sd3", method="neural").shape == (1, 3, 4, 4)


def test_packed_neural_previewer_gives_the_same_for_packed_and_unpacked_input(tmp_path):
    path = _tiny_previewer(tmp_path, "flux2", patch=2, context=1)
    x = torch.randn(2, 128, 4, 6)
    packed = preview(x, "flux2", method="neural", previewer=path)
    unpacked = preview(spaces.unpack(x), "flux2", method="neural", domain="taesd", previewer=path)
    assert packed.shape == (2, 3, 8, 12)
    torch.testing.assert_close(packed, unpacked, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["linear", "neural"])
def test_preview_of_a_video_latent_is_one_preview_per_frame_in_bcthw(method, tmp_path):
    x = torch.randn(2, 16, 5, 4, 6)  # T=5 differs from C=16: frames come from the layout, not from the sizes
    x[1, 3, 2, 1, 1] = float("nan")
    kwargs = {"previewer": _tiny_previewer(tmp_path, "sd3")} if method == "neural" else {}
    out = preview(x, "sd3", method=method, **kwargs)
    assert out.shape == (2, 3, 5, 4, 6)
    assert preview(x, "sd3", method=method, size=12, **kwargs).shape == (2, 3, 5, 8, 12)
    for b in range(2):
        for t in range(5):
            torch.testing.assert_close(out[b, :, t], preview(x[b:b + 1, :, t], "sd3", method=method, **kwargs)[0],
                                       atol=1e-6, rtol=0)
    marked = (out == torch.tensor(MARKER).view(1, 3, 1, 1, 1)).all(1)
    assert marked[1, 2].any() and int(marked.sum()) == int(marked[1, 2].sum())


def test_preview_of_a_video_space_keeps_5d_and_4d_as_given():
    x = torch.randn(1, 16, 7, 4, 4)
    assert preview(x, "wan21").shape == (1, 3, 7, 4, 4)
    assert preview(x[:, :, 0], "wan21").shape == (1, 3, 4, 4)
    with pytest.raises(InputError, match=r"\(B, C, T, H, W\)"):
        preview(torch.randn(1, 1, 16, 7, 4, 4), "wan21")


def test_preview_of_the_real_wan_latent_gives_16_frames(wan_latent):
    out = preview(wan_latent, "wan21", method="linear", domain="model")
    assert out.shape == (1, 3, 16, 40, 64)
    assert float(out.float().std(dim=(0, 1, 3, 4)).min()) > 0.02  # every frame shows a picture, not a flat colour


def test_preview_tiny_of_a_video_latent_runs_the_spaces_tiny_video_decoder_per_clip(tmp_path, monkeypatch,
                                                                                   fresh_tiny_cache):
    from safetensors.torch import save_file

    from latentbridge import tiny
    from latentbridge.tiny import taehv

    layout = taehv.VideoLayout("base", 16, 1, (2, 2, 1), (1, 2, 2))  # taew2_1: Wan 2.1, /8, x4 in time
    state = {f"encoder.{k}": v for k, v in taehv.encoder(layout).state_dict().items()}
    state |= {f"decoder.{k}": v for k, v in taehv.decoder(layout).state_dict().items()}
    save_file(state, str(tmp_path / "taew2_1.safetensors"))
    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(tmp_path))
    z = torch.randn(2, 16, 3, 4, 6)
    z[1, 0, 2, 1, 1] = float("nan")
    out = preview(z, "wan21", method="tiny")
    model = tiny.load(tmp_path / "taew2_1.safetensors", space="wan21")
    want = model.preview(torch.nan_to_num(z, 0.0))
    assert out.shape == want.shape == (2, 3, 3, 4, 6)  # one frame per latent frame, the cheap path
    torch.testing.assert_close(out[0], want[0])
    marked = (out == torch.tensor(MARKER).view(1, 3, 1, 1, 1)).all(1)
    assert marked[1, 2, 1, 1] and int(marked.sum()) == 1


@pytest.mark.parametrize("storage", ["float16", "bfloat16"])
def test_a_half_precision_previewer_previews_as_its_weights_loaded_in_float32(tmp_path, storage):
    half = _tiny_previewer(tmp_path, "sd3", storage=storage)
    tensors, meta = weights.load_tensors(half)
    assert {t.dtype for t in tensors.values()} == {weights.STORAGE_DTYPES[storage]}
    full, full_meta = weights.stored(tensors, meta, "float32")  # the same weights, upcast
    save_file(full, str(tmp_path / "full.safetensors"), metadata=full_meta)
    x = torch.randn(2, 16, 5, 3)
    out = preview(x, "sd3", method="neural", previewer=half)
    assert out.dtype == torch.float32
    assert torch.equal(out, preview(x, "sd3", method="neural", previewer=tmp_path / "full.safetensors"))


def test_preview_neural_computes_in_the_latents_dtype(tmp_path):
    path = _tiny_previewer(tmp_path, "sd3", storage="float16")
    x = torch.randn(2, 16, 5, 3, dtype=torch.bfloat16)
    out = preview(x, "sd3", method="neural", previewer=path)
    net = neural.load("sd3", path, dtype=torch.bfloat16)
    assert next(net.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        assert out.dtype == torch.bfloat16 and torch.equal(out, net(x).clamp(0, 1))


def test_preview_neural_of_a_float16_latent_on_a_cpu_computes_in_float32(tmp_path):
    path = _tiny_previewer(tmp_path, "sd3", storage="float16")
    x = torch.randn(2, 16, 5, 3).half()
    out = preview(x, "sd3", method="neural", previewer=path)
    assert out.dtype == torch.float16
    assert torch.equal(out, preview(x.float(), "sd3", method="neural", previewer=path).half())
