import pytest
import torch
from safetensors.torch import save_file

from latentbridge import weights
from latentbridge.errors import InputError, WeightsFormatError, WeightsNotFoundError


def test_resolve_returns_an_explicit_path(tmp_path):
    f = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(1)}, str(f))
    assert weights.resolve(f) == f


def test_resolve_finds_a_named_file_in_the_env_folders_and_kind_subfolder(tmp_path, monkeypatch):
    (tmp_path / "vae_approx").mkdir()
    f = tmp_path / "vae_approx" / "taef2_decoder.pth"
    f.write_bytes(b"x")
    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(tmp_path))
    assert weights.resolve("taef2_decoder", filenames=["taef2_decoder.pth"], folder="vae_approx") == f


def test_resolve_with_models_dir_searches_only_there(tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    (other / "m.safetensors").write_bytes(b"x")
    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(other))
    only = tmp_path / "only"
    only.mkdir()
    with pytest.raises(WeightsNotFoundError, match="only"):
        weights.resolve("m", filenames=["m.safetensors"], models_dir=only)


def test_resolve_offline_error_says_where_it_looked_and_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(tmp_path))
    hub = [weights.HubFile("madebyollin/taef2", "taef2.safetensors")]
    with pytest.raises(WeightsNotFoundError) as e:
        weights.resolve("taef2", filenames=["taef2.safetensors"], hub=hub)
    msg = str(e.value)
    assert str(tmp_path) in msg and "offline mode" in msg and "Put the file in" in msg


def test_resolve_finds_files_in_the_hugging_face_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    snap = cache / "models--someone--repo" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    save_file({"a": torch.zeros(1)}, str(snap / "w.safetensors"))
    (cache / "models--someone--repo" / "refs").mkdir()
    (cache / "models--someone--repo" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    found = weights.resolve("w", filenames=["w.safetensors"], hub=[weights.HubFile("someone/repo", "w.safetensors")])
    assert found.name == "w.safetensors" and found.is_file()


def test_load_tensors_reads_safetensors_and_torch_files(tmp_path):
    t = {"w": torch.randn(2, 2)}
    save_file(t, str(tmp_path / "a.safetensors"), metadata={"k": "v"})
    torch.save(t, tmp_path / "a.pth")
    got, meta = weights.load_tensors(tmp_path / "a.safetensors")
    torch.testing.assert_close(got["w"], t["w"])
    assert meta == {"k": "v"}
    torch.testing.assert_close(weights.load_tensors(tmp_path / "a.pth")[0]["w"], t["w"])


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_load_tensors_refuses_pickles_that_run_code(tmp_path):
    torch.save({"w": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsFormatError, match="refusing"):
        weights.load_tensors(tmp_path / "evil.pth")


def test_load_tensors_rejects_truncated_files(tmp_path):
    save_file({"w": torch.randn(64, 64)}, str(tmp_path / "a.safetensors"))
    (tmp_path / "b.safetensors").write_bytes((tmp_path / "a.safetensors").read_bytes()[:100])
    with pytest.raises(WeightsFormatError, match="truncated"):
        weights.load_tensors(tmp_path / "b.safetensors")


def _linear_file(path, *, kind="upscaler", weight=1.0, extra=None):
    net = torch.nn.Linear(2, 2)
    torch.nn.init.constant_(net.weight, weight)
    meta = weights.model_metadata(kind=kind, spaces=["sd1"], domains=["taesd"], config={"n": 2}, extra=extra)
    save_file(net.state_dict(), str(path), metadata=meta)
    return path


def _build_linear(info):
    return torch.nn.Linear(info.config["n"], 2)


def test_model_metadata_round_trips_through_model_info():
    meta = weights.model_metadata(kind="interposer", spaces=["sana", "flux2"], domains=["taesd", "model"], arch="bridge",
                                  config={"width": 8}, metrics={"psnr": 21.4})
    info = weights.model_info(meta)
    assert (info.kind, info.spaces, info.domains, info.arch) == ("interposer", ("sana", "flux2"), ("taesd", "model"), "bridge")
    assert info.config == {"width": 8} and info.metrics == {"psnr": 21.4}


@pytest.mark.parametrize("legacy, want", [
    ({"format": "latentbridge.interposer/1", "arch": "bridge", "config": "{}", "src": "sana", "dst": "flux2",
      "domain_in": "taesd", "domain_out": "taesd", "metrics": "{}"}, ("interposer", ("sana", "flux2"))),
    ({"format": "latentbridge.upscaler/1", "space": "flux2", "domain": "taesd", "config": "{}"}, ("upscaler", ("flux2",))),
    ({"latentbridge.kind": "previewer", "latentbridge.space": "flux2", "latentbridge.domain": "taesd",
      "latentbridge.config": "{}"}, ("previewer", ("flux2",))),
])
def test_model_info_reads_the_keys_files_were_written_with_before_the_one_schema(legacy, want):
    info = weights.model_info(legacy)
    assert (info.kind, info.spaces) == want


def test_model_info_of_broken_metadata_names_the_file():
    with pytest.raises(WeightsFormatError, match="x.safetensors: broken model metadata"):
        weights.model_info({"format": "latentbridge.upscaler/1"}, source="x.safetensors")


def test_load_model_builds_from_metadata_and_caches_per_file_device_and_dtype(tmp_path):
    weights.clear_cache()
    path = _linear_file(tmp_path / "m.safetensors")
    net, info = weights.load_model(path, kind="upscaler", build=_build_linear)
    assert info.space == "sd1" and not net.training and not any(p.requires_grad for p in net.parameters())
    assert weights.load_model(path, kind="upscaler", build=_build_linear)[0] is net
    half, _ = weights.load_model(path, kind="upscaler", build=_build_linear, dtype=torch.float16)
    assert half is not net and half.weight.dtype == torch.float16


def test_load_model_reads_a_replaced_file_again(tmp_path):
    weights.clear_cache()
    path = _linear_file(tmp_path / "m.safetensors", weight=1.0)
    first, _ = weights.load_model(path, kind="upscaler", build=_build_linear)
    _linear_file(tmp_path / "new.safetensors", weight=2.0, extra={"pad": "x" * 10}).replace(path)
    second, _ = weights.load_model(path, kind="upscaler", build=_build_linear)
    assert first.weight[0, 0] == 1 and second.weight[0, 0] == 2


def test_load_model_refuses_a_file_of_another_kind(tmp_path):
    path = _linear_file(tmp_path / "m.safetensors", kind="previewer")
    with pytest.raises(WeightsFormatError, match="not a latentbridge upscaler"):
        weights.load_model(path, kind="upscaler", build=_build_linear)


def test_load_state_lists_missing_unexpected_and_misshapen_keys_sorted():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 3))
    tensors = {"0.weight": torch.zeros(2, 2), "1.weight": torch.zeros(5, 5), "z.extra": torch.zeros(1), "a.extra": torch.zeros(1)}
    with pytest.raises(WeightsFormatError) as e:
        weights.load_state(net, tensors, source="f.safetensors")
    msg = str(e.value)
    assert "2 missing (0.bias, 1.bias)" in msg and "2 unexpected (a.extra, z.extra)" in msg
    assert "1 with other shapes (1.weight (5, 5) != (3, 2))" in msg


def test_the_model_cache_is_bounded_and_clearable(tmp_path, monkeypatch):
    weights.clear_cache()
    monkeypatch.setattr(weights, "CACHE_SIZE", 2)
    path = _linear_file(tmp_path / "m.safetensors")
    made = []
    for key in range(3):
        weights.cached(path, (key,), lambda key=key: made.append(key) or key)
    weights.cached(path, (0,), lambda: made.append("again"))
    assert made == [0, 1, 2, "again"]  # the oldest went out first
    weights.clear_cache()
    weights.cached(path, (2,), lambda: made.append("cleared"))
    assert made[-1] == "cleared"


def test_search_paths_follow_the_environment_when_called(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a"))
    assert tmp_path / "a" / "latentbridge" / "models" in weights.search_dirs()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert tmp_path / "b" / "latentbridge" / "models" in weights.search_dirs()


def test_a_registered_folder_named_like_its_weight_folder_is_not_searched_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "_registered", [("vae_approx", tmp_path / "models" / "vae_approx")])
    dirs = [str(d) for d in weights.search_dirs("vae_approx")]
    assert str(tmp_path / "models" / "vae_approx") in dirs and not any(d.endswith("vae_approx/vae_approx") for d in dirs)


def test_resolve_calls_a_folder_a_folder(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        weights.resolve(tmp_path)


def test_a_models_dir_that_is_a_file_is_called_so(tmp_path):
    (tmp_path / "m").write_bytes(b"x")
    with pytest.raises(InputError, match=f"models_dir='{tmp_path / 'm'}' is a file"):
        weights.resolve("w", filenames=["w.safetensors"], models_dir=tmp_path / "m")


def test_a_missing_models_dir_holds_nothing_and_is_named_where_it_looked(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=f"Looked in: {tmp_path / 'm'}"):
        weights.resolve("w", filenames=["w.safetensors"], models_dir=tmp_path / "m")


def test_stored_rounds_floating_tensors_only_and_records_the_dtype():
    tensors = {"w": torch.tensor([1 / 3, 2.0]), "steps": torch.tensor([7])}
    for name, dtype in weights.STORAGE_DTYPES.items():
        out, meta = weights.stored(tensors, {"latentbridge.kind": "upscaler"}, name)
        assert out["w"].dtype == dtype and torch.equal(out["w"], tensors["w"].to(dtype))
        assert torch.equal(out["steps"], tensors["steps"]) and out["steps"].dtype == torch.int64
        assert meta == {"latentbridge.kind": "upscaler", "latentbridge.storage": name}
        assert weights.model_info(meta).storage == name
    assert weights.model_info({"latentbridge.kind": "upscaler"}).storage == "float32"


def test_stored_refuses_weights_beyond_the_dtype_and_unknown_dtypes():
    with pytest.raises(InputError, match="w holds values beyond float16's range.*keep this model in float32"):
        weights.stored({"w": torch.tensor([1e5])}, {}, "float16")
    assert weights.stored({"w": torch.tensor([1e5])}, {}, "bfloat16")[0]["w"].dtype == torch.bfloat16
    with pytest.raises(InputError, match="dtype='int8' is not a storage dtype: use one of float32, float16, bfloat16"):
        weights.stored({}, {}, "int8")


@pytest.mark.parametrize("storage", ["float16", "bfloat16"])
def test_a_half_precision_file_loads_as_its_float32_weights_rounded(tmp_path, storage):
    weights.clear_cache()
    net = torch.nn.Linear(3, 2)
    meta = weights.model_metadata(kind="upscaler", spaces=["sd1"], domains=["taesd"], config={"n": 3})
    tensors, meta = weights.stored(net.state_dict(), meta, storage)
    save_file(tensors, str(tmp_path / "half.safetensors"), metadata=meta)
    loaded, info = weights.load_model(tmp_path / "half.safetensors", kind="upscaler", build=_build_linear)
    assert info.storage == storage and loaded.weight.dtype == torch.float32
    half = weights.STORAGE_DTYPES[storage]
    for name, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value.to(half).float())  # the upcast is exact
    x = torch.randn(4, 3)
    with torch.no_grad():
        assert torch.equal(loaded(x), torch.nn.functional.linear(x, net.weight.to(half).float(), net.bias.to(half).float()))


def _strings(value):
    """Every string inside a decoded JSON value (or the value itself when it is one)."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("path", sorted(weights.PACKAGE_MODELS.glob("*.safetensors")), ids=lambda p: p.name)
def test_a_shipped_model_names_no_folder_of_the_machine_that_trained_it(path):
    import json

    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    for key, text in meta.items():
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        absolute = [s for s in _strings(value) if s.startswith(("/", "~")) or s[1:3] == ":\\"]
        assert not absolute, f"{key} holds local paths {absolute}"
