"""Hostile and careless input to 'dataset build' and 'train': every refusal keeps the contract (exit 2, one error
line, no traceback, nothing written, inputs unchanged), and no file the commands did not write is ever replaced."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from latentbridge.tiny import layouts
from latentbridge.train import build_dataset

from ..contract import assert_refused, run_cli, run_cli_process, snapshot

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_tiny_cache")

CONFIG = """recipe = "toy"
[train]
steps = 2
batch_size = 2
checkpoint_every = 1
eval_every = 0
sample_every = 0
log_every = 1
[optim]
lr = 0.01
warmup_steps = 1
"""


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory) -> Path:
    """A random tiny SD1 encoder (the half 'dataset build --encoders' needs)."""
    torch.manual_seed(0)
    tensors = {f"encoder.layers.{k}": v for k, v in layouts.build("encoder", "standard", 4).state_dict().items()}
    path = tmp_path_factory.mktemp("models") / "enc.safetensors"
    save_file(tensors, str(path), metadata={"latentbridge.space": "sd1"})
    return path


def _images(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def _build(tmp_path, encoder_file, *extra, out="out"):
    return run_cli("dataset", "build", "--images", tmp_path / "im", "--encoders", encoder_file, "--size", 32,
                   *extra, "-o", tmp_path / out)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A toy dataset, its config and a finished two-step run with a checkpoint: (data, config, run)."""
    # Imported here, not at collection: tests/train registers the toy recipe in its own order, and its resume test
    # patches the class that registration leaves in place.
    from ..train.toy_recipe import fake_encoder

    root = tmp_path_factory.mktemp("run")
    paths = sorted(_images(root / "im", 4).glob("*.png"))
    build_dataset(paths, [fake_encoder()], root / "data", size=32)
    config = root / "toy.toml"
    config.write_text(CONFIG)
    done = run_cli("train", config, "--data", root / "data", "--out", root / "run")
    assert done.code == 0, done.err
    return root / "data", config, root / "run"


@pytest.mark.parametrize(("argv", "match"), [
    (["--shard-size", 0], "--shard-size"),
    (["--shard-size", "many"], "--shard-size"),
    (["--batch-size", 0], "--batch-size"),
    (["--batch-size", -3], "--batch-size"),
    (["--extra-sizes", "abc"], "--extra-sizes"),
    (["--extra-sizes", "16,abc"], "--extra-sizes"),
    (["--extra-sizes", -16], "--extra-sizes"),
    (["--extra-sizes", 0], "--extra-sizes"),
    (["--extra-sizes", 99999992], "extra size 99999992"),
    (["--size", -32], "--size"),
    (["--size", 0], "--size"),
    (["--size", 36], "multiple"),
    (["--crops", 0], "--crops"),
    (["--crops", 10**9], "would need"),
])
def test_dataset_build_refuses_bad_options_before_writing(tmp_path, encoder_file, argv, match):
    _images(tmp_path / "im")
    before = snapshot(tmp_path)
    assert_refused(_build(tmp_path, encoder_file, *argv), before, tmp_path, match=match)


def _user_shard(out: Path) -> None:
    out.mkdir()
    (out / "shard-00000.safetensors").write_text("my own notes, not a shard")


def _foreign_safetensors(out: Path) -> None:
    out.mkdir()
    save_file({"w": torch.zeros(2)}, str(out / "shard-00000.safetensors"))


def _unrelated_file(out: Path) -> None:
    out.mkdir()
    (out / "notes.txt").write_text("keep me")


def _manifest(text: str):
    def make(out: Path) -> None:
        out.mkdir()
        (out / "manifest.json").write_text(text)
    return make


def _replaced_shard(out: Path, tmp_path: Path, encoder_file: Path) -> None:
    assert _build(tmp_path, encoder_file, "--shard-size", 1).code == 0
    _foreign_safetensors_in(out / "shard-00001.safetensors")


def _foreign_safetensors_in(path: Path) -> None:
    path.unlink()
    save_file({"w": torch.zeros(2)}, str(path))


def _other_dataset(out: Path, tmp_path: Path, encoder_file: Path) -> None:
    assert _build(tmp_path, encoder_file, "--crops", 2).code == 0


@pytest.mark.parametrize(("prepare", "match"), [
    (_user_shard, "shard-00000.safetensors: not a shard of this dataset"),
    (_foreign_safetensors, "shard-00000.safetensors: not a shard of this dataset"),
    (_unrelated_file, "not a latentbridge dataset (it holds notes.txt)"),
    (_manifest("{not json"), "manifest.json: damaged dataset manifest"),
    (_manifest("[1, 2]"), "manifest.json: not a latentbridge dataset manifest"),
    (_manifest('{"name": "my project"}'), "manifest.json: not a latentbridge dataset manifest"),
    (_manifest('{"format": 1, "plan_id": "x", "shards": "all"}'), "manifest.json: damaged dataset manifest"),
    (lambda out: out.write_text("a file"), "a file, not a folder"),
    (lambda out: out.symlink_to(out.parent / "gone"), "gone, which does not exist"),
    (_replaced_shard, "shard-00001.safetensors: not a shard of this dataset"),
    (_other_dataset, "holds a different dataset"),
])
def test_dataset_build_never_replaces_files_it_did_not_write(tmp_path, encoder_file, prepare, match):
    _images(tmp_path / "im")
    out = tmp_path / "out"
    if prepare in (_replaced_shard, _other_dataset):
        prepare(out, tmp_path, encoder_file)
    else:
        prepare(out)
    before = snapshot(tmp_path)
    assert_refused(_build(tmp_path, encoder_file, "--shard-size", 1), before, tmp_path, match=match)


def test_dataset_build_skips_truncated_and_unreadable_images_with_a_warning_naming_each(tmp_path, encoder_file):
    folder = _images(tmp_path / "im")
    png = (folder / "im0.png").read_bytes()
    (folder / "cut.png").write_bytes(png[: len(png) // 2])
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp_path / "whole.jpg", quality=95)
    jpeg = (tmp_path / "whole.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "text.png").write_text("not a picture")
    done = _build(tmp_path, encoder_file)
    assert done.code == 0 and "Traceback" not in done.err, done.err
    warned = [line for line in done.err.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 3 and all(any(n in line for line in warned) for n in ("cut.png", "cut.jpg", "text.png"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest["images"]) == 3 and len(manifest["skipped"]["unreadable"]) == 3


def test_dataset_build_skips_a_decompression_bomb_with_a_warning(tmp_path, encoder_file, monkeypatch):
    folder = _images(tmp_path / "im")
    Image.new("RGB", (64, 64)).save(folder / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1700)  # 40x40 pictures pass, 64x64 is over twice the limit
    done = _build(tmp_path, encoder_file)
    assert done.code == 0 and "bomb.png: skipped, too large to decode safely" in done.err, done.err
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["skipped"]["too large"] == [
        str(folder / "bomb.png")]


def test_dataset_build_rerun_resumes_its_own_dataset(tmp_path, encoder_file):
    _images(tmp_path / "im")
    assert _build(tmp_path, encoder_file, "--shard-size", 1).code == 0
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"] = manifest["shards"][:1]  # killed after writing shard 1, before listing it
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "shard-00002.safetensors").unlink()
    (out / ".shard-00002.safetensors.x1y2.partial").write_bytes(b"half")  # a SIGKILL leaves its temporary
    first = (out / "shard-00000.safetensors").stat().st_mtime_ns
    done = _build(tmp_path, encoder_file, "--shard-size", 1)
    assert done.code == 0, done.err
    assert len(json.loads((out / "manifest.json").read_text())["shards"]) == 3
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == first


def _checkpoint_hostile(ckpt: Path, marker: Path) -> None:
    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    torch.save({"format": 1, "step": Payload()}, ckpt)


def _checkpoint_truncated(ckpt: Path, marker: Path) -> None:
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])


def _checkpoint_saved(state: object):
    def make(ckpt: Path, marker: Path) -> None:
        torch.save(state, ckpt)
    return make


def _checkpoint_without(key: str):
    def make(ckpt: Path, marker: Path) -> None:
        state = torch.load(ckpt, weights_only=True)
        del state[key]
        torch.save(state, ckpt)
    return make


def _checkpoint_bad_window(ckpt: Path, marker: Path) -> None:
    state = torch.load(ckpt, weights_only=True)
    state["window"] = ["loss"]
    torch.save(state, ckpt)


def _checkpoint_other_nets(ckpt: Path, marker: Path) -> None:
    state = torch.load(ckpt, weights_only=True)
    state["nets"] = {"net": {"weight": torch.zeros(3)}}
    torch.save(state, ckpt)


def _checkpoint_folder(ckpt: Path, marker: Path) -> None:
    ckpt.unlink()
    ckpt.mkdir()


@pytest.mark.parametrize(("damage", "match"), [
    (_checkpoint_hostile, "holds code or objects other than tensors"),
    (_checkpoint_truncated, "unreadable checkpoint"),
    (lambda ckpt, marker: ckpt.write_bytes(b""), "unreadable checkpoint"),
    (lambda ckpt, marker: ckpt.write_bytes(b"\x80\x04garbage" * 10), "damaged"),
    (_checkpoint_folder, "unreadable checkpoint"),
    (_checkpoint_saved([1, 2, 3]), "not a latentbridge training checkpoint"),
    (_checkpoint_saved({"format": 1, "step": 2}), "incomplete checkpoint"),
    (_checkpoint_without("optimizer"), "incomplete checkpoint ('optimizer'"),
    (_checkpoint_without("config"), "incomplete checkpoint ('config'"),
    (_checkpoint_other_nets, "do not fit this run's toy recipe"),
    (_checkpoint_bad_window, "damaged checkpoint"),
    (lambda ckpt, marker: (ckpt.parent / "metrics.csv").write_bytes(b"\xff\xfe\x00"), "damaged metrics file"),
])
def test_train_resume_refuses_hostile_truncated_or_incomplete_checkpoints(tmp_path, run_folder, damage, match):
    data, config, run = run_folder
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    marker = tmp_path / "pwned"
    damage(copy / "checkpoint.pt", marker)
    before = snapshot(tmp_path, data)
    done = run_cli("train", config, "--data", data, "--out", copy, "--resume", "--steps", 4)
    assert_refused(done, before, tmp_path, data, match=match)
    assert "weights_only" not in done.err and not marker.exists()


@pytest.mark.parametrize(("out", "resume", "match"), [
    ("missing", True, "nothing to resume"),
    ("empty", True, "nothing to resume"),
    ("user-files", True, "nothing to resume"),
    ("user-files", False, "is not empty and holds no run"),
    ("a-file", False, "a file, not a run folder"),
    ("dangling", False, "which does not exist"),
    ("finished", False, "already holds a run"),
])
def test_train_refuses_a_run_folder_it_would_damage_and_creates_nothing(tmp_path, run_folder, out, resume, match):
    data, config, run = run_folder
    target = tmp_path / out
    if out == "empty":
        target.mkdir()
    elif out == "user-files":
        target.mkdir()
        (target / "metrics.csv").write_text("my own table\n")
    elif out == "a-file":
        target.write_text("keep me")
    elif out == "dangling":
        target.symlink_to(tmp_path / "gone")
    elif out == "finished":
        shutil.copytree(run, target)
    before = snapshot(tmp_path, data)
    done = run_cli("train", config, "--data", data, "--out", target, *(["--resume"] if resume else []))
    assert_refused(done, before, tmp_path, data, match=match)


@pytest.mark.parametrize(("text", "match"), [
    ('[recipe]\nname = "previewer"\nwidth = 0\n', "recipe.width = 0"),
    ('[recipe]\nname = "previewer"\nwidth = -4\n', "recipe.width = -4"),
    ('[recipe]\nname = "interposer"\nhi_width = 0\n', "recipe.hi_width = 0"),
    ('[recipe]\nname = "upscaler"\nscale_ranges = [[0.0, 2.0]]\n', "recipe.scale_ranges holds 0.0"),
    ('[recipe]\nname = "previewer"\nridge = -1e-5\n', "recipe.ridge"),
    ('recipe = "toy"\n[optim]\nlr = nan\n', "optim.lr = nan"),
    ('recipe = "toy"\n[optim]\nlr = inf\n', "optim.lr = inf"),
    ('recipe = "toy"\n[optim]\nlr = -0.001\n', "optim.lr = -0.001"),
    ('recipe = "toy"\n[optim]\nlr = 0\n', "optim.lr = 0"),
    ('recipe = "toy"\n[optim]\nbeta2 = 1.0\n', "optim.beta2"),
    ('recipe = "toy"\n[optim]\nmin_lr_ratio = 2.0\n', "optim.min_lr_ratio"),
    ('recipe = "toy"\n[train]\nsteps = 0\n', "train.steps = 0"),
    ('recipe = "toy"\n[train]\nsteps = -5\n', "train.steps = -5"),
    ('recipe = "toy"\n[train]\nbatch_size = 0\n', "train.batch_size = 0"),
    ('recipe = "toy"\n[train]\ncheckpoint_every = -1\n', "train.checkpoint_every"),
    ('recipe = "toy"\n[train]\nsteps = 2.5\n', "train.steps"),
    ('recipe = "toy"\n[train]\nsteps = true\n', "train.steps"),
    ('recipe = "toy"\n[train]\nstepz = 3\n', "stepz"),
    ('recipe = "toy"\ntrain = 3\n', "[train] must be a table"),
    ('recipe = "toy"\n[optim]\nlr = "fast"\n', "optim.lr"),
    ('recipe = "toy"\n[extras]\n', "unknown section"),
    ('recipe = "nope"\n', "unknown recipe"),
    ("recipe = \n", "not valid TOML"),
    (b"\xff\xfe\x00binary", "not a text file"),
])
def test_train_refuses_a_bad_config_naming_the_key_and_the_file(tmp_path, run_folder, text, match):
    data = run_folder[0]
    config = tmp_path / "bad.toml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = snapshot(tmp_path, data)
    done = run_cli("train", config, "--data", data, "--out", tmp_path / "run")
    assert_refused(done, before, tmp_path, data, match=match)
    assert str(config) in done.err


@pytest.mark.parametrize("argv", [["--steps", -1], ["--steps", "x"], ["--checkpoint-every", -2]])
def test_train_refuses_bad_overrides(tmp_path, run_folder, argv):
    data, config, _ = run_folder
    before = snapshot(tmp_path, data)
    assert_refused(run_cli("train", config, "--data", data, "--out", tmp_path / "run", *argv), before, tmp_path, data)


def _drop_shard(data: Path) -> None:
    (data / "shard-00000.safetensors").unlink()


def _truncate_shard(data: Path) -> None:
    shard = data / "shard-00000.safetensors"
    shard.write_bytes(shard.read_bytes()[:200])


def _foreign_shard(data: Path) -> None:
    shard = data / "shard-00000.safetensors"
    shard.unlink()
    save_file({"image@32": torch.zeros(4, 3, 32, 32, dtype=torch.uint8)}, str(shard), metadata={"plan_id": "other"})


def _short_shard(data: Path) -> None:
    shard = data / "shard-00000.safetensors"
    tensors = load_file(shard)
    save_file({k: v[:1] for k, v in tensors.items()}, str(shard), metadata=safe_open(str(shard), "pt").metadata())


@pytest.mark.parametrize(("damage", "match"), [
    (lambda data: (data / "manifest.json").write_text("{"), "manifest.json: damaged dataset manifest"),
    (_foreign_shard, "shard-00000.safetensors: does not match manifest.json"),
    (_short_shard, "shard-00000.safetensors: does not match manifest.json"),
    (lambda data: (data / "manifest.json").unlink(), "not a latentbridge dataset"),
    (_drop_shard, "incomplete"),
    (_truncate_shard, "shard-00000.safetensors: damaged shard"),
])
def test_train_refuses_a_damaged_dataset(tmp_path, run_folder, damage, match):
    data, config, _ = run_folder
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    damage(copy)
    before = snapshot(tmp_path)
    assert_refused(run_cli("train", config, "--data", copy, "--out", tmp_path / "run"), before, tmp_path, match=match)


def test_refusals_keep_the_contract_in_a_fresh_process(tmp_path, encoder_file):
    """As a user's shell runs it: no warning or progress line beside the one error line."""
    _images(tmp_path / "im")
    _user_shard(tmp_path / "out")
    config = tmp_path / "bad.toml"
    config.write_text('[recipe]\nname = "previewer"\nwidth = 0\n')
    before = snapshot(tmp_path)
    env = {"OMP_NUM_THREADS": "1"}
    build = run_cli_process("dataset", "build", "--images", tmp_path / "im", "--encoders", encoder_file, "--size", 32,
                            "-o", tmp_path / "out", env=env)
    assert_refused(build, before, tmp_path, match="not a shard of this dataset")
    train = run_cli_process("train", config, "--data", tmp_path / "out", "--out", tmp_path / "run", env=env)
    assert_refused(train, before, tmp_path, match="recipe.width = 0")


def test_resource_limits_hold_for_batches_and_shards(tmp_path, run_folder, encoder_file, monkeypatch):
    """A training batch and a dataset shard are held in memory whole: both obey LATENTBRIDGE_MAX_PIXELS."""
    data, _, _ = run_folder
    config = tmp_path / "big.toml"
    config.write_text(CONFIG.replace("batch_size = 2", "batch_size = 100000000"))
    _images(tmp_path / "im")
    before = snapshot(tmp_path, data)
    assert_refused(run_cli("train", config, "--data", data, "--out", tmp_path / "run"), before, tmp_path, data,
                   match="a training batch would stand for 100000000 images of 32x32 pixels")
    monkeypatch.setenv("LATENTBRIDGE_MAX_PIXELS", "2048")
    assert_refused(_build(tmp_path, encoder_file), before, tmp_path, data, match="shard")
