import json

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from latentbridge.errors import InputError
from latentbridge.train import DatasetInfo, Encoder, LatentDataset, build_dataset
from latentbridge.train import dataset as dataset_module

from .conftest import make_images
from .toy_recipe import fake_encoder


def test_build_dataset_writes_aligned_shards_and_a_manifest(tmp_path):
    paths = make_images(tmp_path / "im", n=5)
    manifest = build_dataset(paths, [fake_encoder("a"), fake_encoder("b")], tmp_path / "d", size=32,
                             extra_sizes=[16], crops=3, shard_size=4)
    assert len(manifest["items"]) == 15 and [s["count"] for s in manifest["shards"]] == [4, 4, 4, 3]
    assert set(manifest["encoders"]) == {"a", "b"} and manifest["sizes"] == [32, 16]
    assert all(len(i["sha256"]) == 64 for i in manifest["images"])
    with safe_open(str(tmp_path / "d" / "shard-00000.safetensors"), "pt") as f:
        assert f.get_tensor("image@32").dtype == torch.uint8 and f.get_tensor("image@32").shape == (4, 3, 32, 32)
        assert f.get_tensor("a@32").shape == (4, 4, 4, 4) and f.get_tensor("b@16").shape == (4, 4, 2, 2)
        torch.testing.assert_close(f.get_tensor("a@32"), f.get_tensor("b@32"))


def test_build_dataset_latents_match_encoding_the_stored_crop(tmp_path):
    paths = make_images(tmp_path / "im", n=2)
    build_dataset(paths, [fake_encoder()], tmp_path / "d", size=32, crops=2)
    data = LatentDataset(DatasetInfo(tmp_path / "d"), split=None)
    batch = data.batch(torch.arange(len(data)))
    expected = fake_encoder()(batch["image@32"])
    torch.testing.assert_close(batch["fake@32"], expected, atol=2e-3, rtol=1e-3)


def test_build_dataset_skips_and_counts_unreadable_and_tiny_images(tmp_path):
    paths = make_images(tmp_path / "im", n=3)
    (tmp_path / "im" / "broken.png").write_bytes(b"not a png")
    Image.new("RGB", (8, 8)).save(tmp_path / "im" / "tiny.png")
    manifest = build_dataset([*paths, tmp_path / "im" / "broken.png", tmp_path / "im" / "tiny.png"],
                             [fake_encoder()], tmp_path / "d", size=32)
    assert len(manifest["images"]) == 3
    assert len(manifest["skipped"]["unreadable"]) == 1 and len(manifest["skipped"]["too small"]) == 1


def test_build_dataset_resumes_after_an_interruption_without_redoing_shards(tmp_path, monkeypatch):
    paths = make_images(tmp_path / "im", n=6)
    calls = {"n": 0}
    real = dataset_module._encode_chunk

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset_module, "_encode_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(paths, [fake_encoder()], tmp_path / "d", size=32, crops=2, shard_size=4)
    files = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert files == ["manifest.json", "shard-00000.safetensors", "shard-00001.safetensors"]
    first = (tmp_path / "d" / "shard-00000.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(dataset_module, "_encode_chunk", real)
    calls["n"] = 0
    manifest = build_dataset(paths, [fake_encoder()], tmp_path / "d", size=32, crops=2, shard_size=4)
    assert len(manifest["shards"]) == 3
    assert (tmp_path / "d" / "shard-00000.safetensors").stat().st_mtime_ns == first
    assert len(LatentDataset(DatasetInfo(tmp_path / "d"), split=None)) == 12


def test_build_dataset_disk_full_leaves_no_partial_shard_and_a_valid_manifest(tmp_path, monkeypatch):
    paths = make_images(tmp_path / "im", n=4)
    real_save = dataset_module.save_file
    calls = {"n": 0}

    def save_then_fail(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] == 2:
            with open(filename, "wb") as f:
                f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(dataset_module, "save_file", save_then_fail)
    with pytest.raises(InputError, match="(?i)no space left"):
        build_dataset(paths, [fake_encoder()], tmp_path / "d", size=32, shard_size=2)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["manifest.json", "shard-00000.safetensors"]
    assert len(json.loads((tmp_path / "d" / "manifest.json").read_text())["shards"]) == 1


def test_build_dataset_refuses_a_folder_holding_another_dataset(tmp_path):
    paths = make_images(tmp_path / "im", n=2)
    build_dataset(paths, [fake_encoder()], tmp_path / "d", size=32)
    with pytest.raises(InputError, match="different dataset"):
        build_dataset(paths, [fake_encoder()], tmp_path / "d", size=32, crops=2)


def test_build_dataset_resume_refuses_an_encoder_whose_weights_changed(tmp_path):
    paths = make_images(tmp_path / "im", n=2)
    build_dataset(paths, [fake_encoder()], tmp_path / "d", size=32, shard_size=1)
    (tmp_path / "d" / "shard-00001.safetensors").unlink()  # an interrupted build, to be resumed
    real = fake_encoder()
    changed = Encoder(real.name, real.spec, real.space, real.domain, lambda x: real.fn(x) * 1.5 + 0.1)
    before = (tmp_path / "d" / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="other weights for the encoder fake"):
        build_dataset(paths, [changed], tmp_path / "d", size=32, shard_size=1)
    assert (tmp_path / "d" / "manifest.json").read_bytes() == before
    assert len(build_dataset(paths, [fake_encoder()], tmp_path / "d", size=32, shard_size=1)["shards"]) == 2


def test_build_dataset_rejects_sizes_that_are_not_multiples_of_the_downscale(tmp_path):
    with pytest.raises(InputError, match="multiple"):
        build_dataset(make_images(tmp_path / "im", n=1), [fake_encoder()], tmp_path / "d", size=36)


def test_dataset_splits_follow_the_eval_patterns(toy_dataset):
    info = DatasetInfo(toy_dataset)
    assert len(LatentDataset(info, split="train")) == 16 and len(LatentDataset(info, split="eval")) == 4
    assert info.key_for("sd1") == "fake@32"


def test_dataset_missing_keys_say_how_to_rebuild(toy_dataset):
    with pytest.raises(InputError, match="Rebuild"):
        LatentDataset(DatasetInfo(toy_dataset), keys=["taef2@256"])
    with pytest.raises(InputError, match="no encoder for sana"):
        DatasetInfo(toy_dataset).key_for("sana")


@pytest.mark.parametrize(("options", "match"), [
    ({"size": 0}, "size=0"),
    ({"size": 32.0}, "size=32.0"),
    ({"crops": 0}, "crops=0"),
    ({"shard_size": 0}, "shard_size=0"),
    ({"shard_size": True}, "shard_size=True"),
    ({"batch_size": -1}, "batch_size=-1"),
    ({"extra_sizes": [0]}, "extra size 0"),
    ({"extra_sizes": [64]}, "extra size 64"),
    ({"crops": 10**12}, "would need"),
])
def test_build_dataset_checks_every_option_before_creating_the_folder(tmp_path, options, match):
    paths = make_images(tmp_path / "im", n=2)
    with pytest.raises(InputError, match=match):
        build_dataset(paths, [fake_encoder()], tmp_path / "d", **{"size": 32, **options})
    assert not (tmp_path / "d").exists()


def test_build_dataset_with_no_usable_image_creates_no_folder(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="no usable images"):
        build_dataset([tmp_path / "broken.png"], [fake_encoder()], tmp_path / "d", size=32)
    assert not (tmp_path / "d").exists()


def test_build_dataset_takes_paths_as_strings(tmp_path):
    paths = [str(p) for p in make_images(tmp_path / "im", n=2)]
    manifest = build_dataset(paths, [fake_encoder()], str(tmp_path / "d"), size=32)
    assert [i["name"] for i in manifest["images"]] == ["img_00.png", "img_01.png"]
