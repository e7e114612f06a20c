import pytest
import torch

from latentbridge import hub
from latentbridge.errors import WeightsFormatError
from latentbridge.interposer import V4_PAIRS, bridge_entry, discover, v4_filename
from latentbridge.weights import HubFile

from .helpers import write_bridge, write_v4


def test_v4_filenames_are_the_published_ones():
    assert v4_filename("sdxl", "sd1") == "xl-to-v1_interposer-v4.0.safetensors"
    assert v4_filename("cascade_b", "sd3") == "ca-to-v3_interposer-v4.0.safetensors"
    assert len(V4_PAIRS) == 12


def test_discover_finds_v4_and_bridge_files_in_models_dir_only_when_offline(tmp_path, monkeypatch):
    write_v4(tmp_path / "m" / "interposers", "xl", "v1")
    write_v4(tmp_path / "m" / "v4.0", "fx", "xl")
    write_bridge(tmp_path / "m", "flux2", "sana")
    (tmp_path / "m" / "unrelated.safetensors").write_bytes(b"not a safetensors file")
    monkeypatch.setenv("LATENTBRIDGE_OFFLINE", "1")
    found = {(e.src, e.dst, e.arch) for e in discover(tmp_path / "m")}
    assert found == {("sdxl", "sd1", "v4"), ("flux1", "sdxl", "v4"), ("flux2", "sana", "bridge")}


def test_discover_offers_the_published_v4_set_from_the_hub_when_online(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("LATENTBRIDGE_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "cached", lambda file: None)  # nothing cached (discover never downloads)
    write_v4(tmp_path / "m", "xl", "v1")
    entries = discover(tmp_path / "m")
    on_hub = [e for e in entries if isinstance(e.location, HubFile)]
    assert len(on_hub) == 11 and all(e.location.subfolder == "v4.0" for e in on_hub)
    assert next(e for e in entries if e.local).src == "sdxl"


def test_discover_searches_the_user_model_folders_with_an_interposers_kind(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(tmp_path / "user"))
    write_bridge(tmp_path / "user" / "interposers", "sana", "flux2")
    assert any(e.src == "sana" and e.dst == "flux2" and e.local for e in discover(hub=False))


def test_discover_sees_a_model_file_replaced_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTBRIDGE_OFFLINE", "1")
    path = write_bridge(tmp_path, "flux2", "sana")
    assert {(e.src, e.dst) for e in discover(tmp_path)} == {("flux2", "sana")}
    path.unlink()
    write_bridge(tmp_path, "sana", "flux2", width=16).rename(path)  # same name, new header
    assert {(e.src, e.dst) for e in discover(tmp_path)} == {("sana", "flux2")}


def test_bridge_entry_refuses_files_without_our_metadata(tmp_path):
    path = write_v4(tmp_path, "v1", "xl")
    with pytest.raises(WeightsFormatError, match="not a latentbridge interposer"):
        bridge_entry(path)


def test_bridge_entry_reads_spaces_domains_and_metrics(tmp_path):
    entry = bridge_entry(write_bridge(tmp_path, "flux2", "sana"))
    assert (entry.src, entry.dst, entry.domain_in, entry.metrics) == ("flux2", "sana", "taesd", {"rel_mse": 0.5})
    assert entry.flops_per_pixel > 0


def test_no_denormals_zeroes_only_subnormal_values():
    from latentbridge.interposer.models import no_denormals

    t = torch.tensor([1e-39, -1e-40, 1e-37, 0.5, 0.0])
    assert no_denormals(t).tolist() == [0.0, 0.0, pytest.approx(1e-37), 0.5, 0.0]


def huge_checkpoint(path, gigabytes: int = 48):
    """A sparse safetensors file whose header announces ``gigabytes`` of data (costs no disk)."""
    import json
    import os

    header = json.dumps({"model.w": {"dtype": "F32", "shape": [gigabytes * 250_000_000],
                                     "data_offsets": [0, gigabytes * 1_000_000_000]}}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    os.truncate(path, 8 + len(header) + gigabytes * 1_000_000_000)
    return path


def test_a_48_gb_checkpoint_in_a_models_folder_leaves_discovery_working(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTBRIDGE_MODELS", str(tmp_path / "m"))
    huge_checkpoint(tmp_path / "m" / "sd_xl_base_1.0.safetensors")
    huge_checkpoint(tmp_path / "m" / "interposers" / "other.safetensors")
    write_bridge(tmp_path / "m" / "interposers", "sana", "flux2")
    assert any(e.src == "sana" and e.local and "m" in str(e.location) for e in discover(hub=False))
