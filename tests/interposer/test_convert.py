import pytest
import torch
from safetensors.torch import save_file

from latentbridge import spaces, weights
from latentbridge.errors import InputError, UnknownSpaceError
from latentbridge.interposer import bridge_entry, convert, inference_net, load_file

from .helpers import write_bridge, write_v4


@pytest.fixture
def models(tmp_path, monkeypatch):
    """A folder with our flux2 <-> sana models and two v4.0 files; offline, so only these count."""
    monkeypatch.setenv("LATENTBRIDGE_OFFLINE", "1")
    d = tmp_path / "models"
    write_bridge(d, "flux2", "sana", seed=1)
    write_bridge(d, "sana", "flux2", seed=2)
    write_v4(d, "xl", "v1", seed=3)
    write_v4(d, "v1", "v3", seed=4)
    return d


def flux2_raw(batch=2, size=8):
    return torch.randn(batch, 128, size, size)


def test_convert_feeds_each_model_its_trained_domain_and_returns_the_callers(models):
    x = flux2_raw()
    net, _ = load_file(models / "flux2-to-sana.safetensors")
    sana = spaces.get("sana")
    want_taesd = net(spaces.convert_domain(x, "flux2", "raw", "taesd"))
    for domain in spaces.DOMAINS:
        given = spaces.convert_domain(x, "flux2", "raw", domain)
        got = convert(given, "flux2", "sana", domain=domain, models_dir=models)
        assert got.shape == sana.latent_shape(128, 128, domain=domain, batch=2)
        torch.testing.assert_close(got, spaces.convert_domain(want_taesd, sana, "taesd", domain), rtol=1e-4, atol=1e-5)


def test_convert_runs_v4_models_on_raw_latents_whatever_domain_is_given(models):
    raw = torch.randn(1, 4, 12, 10) * 5
    net, _ = load_file(models / "xl-to-v1_interposer-v4.0.safetensors")
    want = net(raw)
    got = convert(spaces.get("sdxl").to_model(raw), "sdxl", "sd1", domain="model", models_dir=models)
    torch.testing.assert_close(got, spaces.get("sd1").to_model(want), rtol=1e-4, atol=1e-4)


def test_convert_chains_models(models):
    y = convert(torch.randn(1, 4, 8, 8), "xl", "v3", models_dir=models)
    assert y.shape == (1, 16, 8, 8)


def test_convert_accepts_flux2_packed_or_unpacked(models):
    x = flux2_raw(1)
    packed = convert(x, "flux2", "sana", models_dir=models)
    unpacked = convert(spaces.unpack(x), "flux2", "sana", models_dir=models)
    torch.testing.assert_close(packed, unpacked)


def test_convert_passes_leading_dims_through(models):
    x = torch.randn(3, 2, 32, 4, 4)
    y = convert(x, "sana", "flux2", domain="taesd", models_dir=models)
    assert y.shape == (3, 2, 32, 16, 16)
    torch.testing.assert_close(y[1, 0], convert(x[1, 0], "sana", "flux2", domain="taesd", models_dir=models))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_convert_keeps_dtype_and_device(models, dtype):
    x = torch.randn(1, 32, 4, 4, dtype=dtype)
    y = convert(x, "sana", "flux2", domain="taesd", models_dir=models, device="cpu")
    assert y.dtype == dtype and y.device == x.device
    ref = convert(x.float(), "sana", "flux2", domain="taesd", models_dir=models)
    torch.testing.assert_close(y.float(), ref, rtol=2e-2, atol=2e-2)


def test_convert_does_not_touch_the_callers_tensor(models):
    x = flux2_raw(1)
    before = x.clone()
    convert(x, "flux2", "sana", domain="model", models_dir=models)
    assert torch.equal(x, before)


def test_convert_same_space_changes_only_the_domain(models):
    x = torch.randn(2, 4, 8, 8)
    y = convert(x, "sd1", "v1", models_dir=models)
    assert torch.equal(y, x) and y is not x


def test_convert_refuses_nan_input(models):
    x = flux2_raw(1)
    x[0, 3, 2, 2] = float("nan")
    with pytest.raises(InputError, match="1 NaN or infinite"):
        convert(x, "flux2", "sana", models_dir=models)


def test_convert_refuses_channels_that_do_not_fit_the_source(models):
    with pytest.raises(InputError, match="16 channels but a sdxl latent in the raw domain has 4"):
        convert(torch.randn(1, 16, 8, 8), "sdxl", "sd1", domain="raw", models_dir=models)


def test_convert_suggests_the_closest_space_name(models):
    with pytest.raises(UnknownSpaceError, match="did you mean flux1 or flux2"):
        convert(flux2_raw(1), "flux2", "fluxx2", models_dir=models)


def test_convert_with_models_dir_offline_uses_only_the_models_there(models):
    with pytest.raises(InputError) as e:
        convert(torch.randn(1, 16, 8, 8), "fx", "v1", models_dir=models)
    assert "Possible conversions" in str(e.value) and "offline" in str(e.value)


@pytest.mark.parametrize("storage", ["float16", "bfloat16"])
def test_a_half_precision_interposer_converts_as_its_weights_loaded_in_float32(tmp_path, monkeypatch, storage):
    monkeypatch.setenv("LATENTBRIDGE_OFFLINE", "1")
    half = write_bridge(tmp_path / "half", "sana", "flux2", seed=2, storage=storage)
    tensors, meta = weights.load_tensors(half)
    assert {t.dtype for t in tensors.values()} == {weights.STORAGE_DTYPES[storage]}
    (tmp_path / "full").mkdir()
    full, full_meta = weights.stored(tensors, meta, "float32")  # the same weights, upcast
    save_file(full, str(tmp_path / "full" / half.name), metadata=full_meta)
    x = torch.randn(1, 32, 4, 4)
    got = convert(x, "sana", "flux2", domain="taesd", models_dir=tmp_path / "half")
    assert got.dtype == torch.float32
    assert torch.equal(got, convert(x, "sana", "flux2", domain="taesd", models_dir=tmp_path / "full"))


def test_convert_computes_bfloat16_in_bfloat16_and_float16_in_float32_on_a_cpu(models):
    path = models / "sana-to-flux2.safetensors"
    x = torch.randn(1, 32, 4, 4)
    net = inference_net(path, bridge_entry(path), torch.device("cpu"), torch.bfloat16)
    assert next(net.parameters()).dtype == torch.bfloat16
    y = convert(x.bfloat16(), "sana", "flux2", domain="taesd", models_dir=models)
    assert torch.equal(y, net(x.bfloat16().contiguous(memory_format=torch.channels_last)).contiguous())
    y16 = convert(x.half(), "sana", "flux2", domain="taesd", models_dir=models)
    want = convert(x.half().float(), "sana", "flux2", domain="taesd", models_dir=models).half()
    assert y16.dtype == torch.float16 and torch.equal(y16, want)
