import pytest
import torch
from safetensors.torch import save_file

from latentbridge import weights
from latentbridge.errors import WeightsFormatError, WeightsNotFoundError


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
