"""Hostile files and writes through the CLI: each refusal keeps the contract (exit 2, one ``error:`` line, nothing
written, inputs unchanged); a signal mid-write leaves no temporary file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.contract import assert_refused, run_cli, small_disk, snapshot
from tests.io.hostile import IMAGE_FILES, LATENT_FILES, PHOTO, png16

from latentbridge import io

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_tiny_cache")

LATENT_COMMANDS = {
    "info": lambda path, out: ["info", path],
    "preview": lambda path, out: ["preview", path, "-o", out / "p.png"],
    "upscale": lambda path, out: ["upscale", path, "--method", "bicubic", "--scale", "2", "-o", out / "u.safetensors"],
    "convert": lambda path, out: ["convert", path, "--to", "sd1", "-o", out / "c.safetensors"],
    "decode": lambda path, out: ["decode", path, "--model", "taesd", "-o", out / "d.png"],
}




def _folders(tmp_path: Path) -> tuple[Path, Path]:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    return inputs, out


@pytest.mark.parametrize("command", sorted(LATENT_COMMANDS))
@pytest.mark.parametrize("case", sorted(LATENT_FILES))
def test_hostile_latent_files_are_refused_by_every_reading_command(tmp_path, case, command):
    inputs, out = _folders(tmp_path)
    make, words = LATENT_FILES[case]
    path = make(inputs)
    before = snapshot(inputs, out)
    assert_refused(run_cli(*LATENT_COMMANDS[command](path, out)), before, inputs, out, match=words)


@pytest.mark.parametrize("case", sorted(IMAGE_FILES))
def test_hostile_images_are_refused_by_encode(tmp_path, case, model_file):
    inputs, out = _folders(tmp_path)
    make, words = IMAGE_FILES[case]
    path = make(inputs)
    before = snapshot(inputs, out)
    result = run_cli("encode", path, "--model", model_file, "--fit", "pad", "-o", out / "z.safetensors")
    assert_refused(result, before, inputs, out, match=words)


def test_a_decompression_bomb_is_refused_by_fit_preview(tmp_path, model_file):
    inputs, out = _folders(tmp_path)
    for i in range(3):
        Image.fromarray(PHOTO).save(inputs / f"p{i}.png")
    IMAGE_FILES["decompression bomb"][0](inputs)
    before = snapshot(inputs, out)
    result = run_cli("fit-preview", "--encoder", model_file, "--images", inputs, "--size", "32", "-o", out / "f.safetensors")
    assert_refused(result, before, inputs, out, match="decompression bomb")


@pytest.mark.parametrize("case", ["decompression bomb", "picture over Pillow's warning limit"])
def test_a_decompression_bomb_in_a_dataset_is_skipped_not_decoded(tmp_path, model_file, case):
    inputs, out = _folders(tmp_path)
    IMAGE_FILES[case][0](inputs)
    before = snapshot(inputs, out)
    result = run_cli("dataset", "build", "--images", inputs, "--encoders", model_file, "--size", "32",
                     "-o", out / "ds")
    assert_refused(result, before, inputs, out, match="no usable images")


def test_a_16_bit_png_encodes_like_the_same_picture_in_8_bits(tmp_path, model_file):
    inputs, out = _folders(tmp_path)
    grey = PHOTO[..., 0]
    png16("wide.png", grey.astype(np.uint16) * 257)(inputs)
    Image.fromarray(grey).save(inputs / "narrow.png")
    for name in ("wide", "narrow"):
        result = run_cli("encode", inputs / f"{name}.png", "--model", model_file, "-o", out / f"{name}.safetensors")
        assert result.code == 0, result.err
    torch.testing.assert_close(io.load_latent(out / "wide.safetensors").tensor,
                               io.load_latent(out / "narrow.safetensors").tensor)


@pytest.fixture
def latent_file(tmp_path) -> Path:
    path = tmp_path / "in" / "z.safetensors"
    path.parent.mkdir()
    io.save_latent(path, torch.randn(1, 4, 32, 32), space="sd1", domain="raw")
    return path


@pytest.mark.parametrize(("output", "words"), [
    ("dangling.safetensors", "which does not exist"),
    ("existing.safetensors", "already exists"),
    ("missing/u.safetensors", "does not exist; create it first"),
    ("a-file/u.safetensors", "is a file, not a folder"),
    ("a-folder", "is a folder"),
])
def test_unwritable_outputs_are_refused_with_the_reason(tmp_path, latent_file, output, words):
    out = tmp_path / "out"
    out.mkdir()
    (out / "dangling.safetensors").symlink_to(tmp_path / "gone.safetensors")
    (out / "existing.safetensors").write_bytes(b"keep me")
    (out / "a-file").write_bytes(b"keep me")
    (out / "a-folder").mkdir()
    before = snapshot(latent_file.parent, out)
    result = run_cli("upscale", latent_file, "--method", "bicubic", "--scale", "2", "-o", out / output)
    assert_refused(result, before, latent_file.parent, out, match=words)


@pytest.mark.parametrize("suffix", [".safetensors", ".latent", ".npy", ".pt", ".png"])
def test_a_full_disk_is_named_and_nothing_is_left_on_it(tmp_path, latent_file, suffix):
    with small_disk(tmp_path / "disk", "64k") as disk:
        before = snapshot(latent_file.parent, disk)
        if suffix == ".png":
            result = run_cli("preview", latent_file, "--size", "512", "-o", disk / "p.png")
        else:
            result = run_cli("upscale", latent_file, "--method", "bicubic", "--scale", "4", "-o", disk / f"u{suffix}")
        assert_refused(result, before, latent_file.parent, disk, match="no space left")


def test_a_read_only_file_system_is_named(tmp_path, latent_file):
    with small_disk(tmp_path / "ro", read_only=True) as disk:
        result = run_cli("upscale", latent_file, "--method", "bicubic", "--scale", "2", "-o", disk / "u.safetensors")
        assert_refused(result, {}, disk, match="read-only file system")


def test_a_decoded_batch_is_written_whole_or_not_at_all(tmp_path, model_file):
    inputs, out = _folders(tmp_path)
    latent = io.save_latent(inputs / "z.safetensors", torch.randn(3, 4, 4, 4), space="sd1", domain="taesd")
    (out / "d_002.png").mkdir()  # the last of the three names is taken by a folder
    before = snapshot(inputs, out)
    result = run_cli("decode", latent, "--model", model_file, "-o", out / "d.png")
    assert_refused(result, before, inputs, out, match="d_002.png is a folder")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_large_write_leaves_no_partial_file(tmp_path, signum):
    """A user's process (python -m latentbridge) stopped while it writes 64 MB: no .partial, no output, one line.

    The child starts with SIGINT at its default, as from a terminal: a test run started in the background of a
    non-interactive shell inherits SIGINT ignored, and the CLI, like Python, then leaves it ignored.
    """
    inputs, out = _folders(tmp_path)
    np.save(inputs / "big.npy", np.random.default_rng(0).standard_normal((1, 4, 1024, 1024), dtype=np.float32))
    before = snapshot(inputs, out)
    env = {**os.environ, "LATENTBRIDGE_MAX_PIXELS": str(1 << 40)}
    proc = subprocess.Popen([sys.executable, "-m", "latentbridge", "upscale", inputs / "big.npy", "--space", "sd1",
                             "--domain", "raw", "--method", "nearest", "--scale", "2", "-o", out / "big.npy"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        while proc.poll() is None and not list(out.glob(".*.partial")):
            time.sleep(0.001)  # waiting for the write to begin, not timing it
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 128 + signum, err
    assert len(lines) == 1 and lines[0].startswith("error: interrupted by "), err
    assert snapshot(inputs, out) == before


FOLDER_AS_FILE = {
    "latent": lambda f, z, out: ["info", f],
    "preview --factors": lambda f, z, out: ["preview", z, "--factors", f, "-o", out / "p.png"],
    "preview --previewer": lambda f, z, out: ["preview", z, "--method", "neural", "--previewer", f, "-o", out / "p.png"],
    "upscale --model": lambda f, z, out: ["upscale", z, "--model", f, "--scale", "2", "-o", out / "u.safetensors"],
    "decode --model": lambda f, z, out: ["decode", z, "--model", f, "-o", out / "d.png"],
    "encode image": lambda f, z, out: ["encode", f, "--model", "taesd", "-o", out / "e.safetensors"],
    "encode --model": lambda f, z, out: ["encode", z, "--model", f, "-o", out / "e.safetensors"],
    "fit-preview --encoder": lambda f, z, out: ["fit-preview", "--encoder", f, "--images", z.parent, "-o",
                                                out / "f.safetensors"],
}


@pytest.mark.parametrize("flag", sorted(FOLDER_AS_FILE))
def test_a_folder_given_as_a_file_is_called_a_folder(tmp_path, latent_file, flag):
    out = tmp_path / "out"
    out.mkdir()
    folder = tmp_path / "in" / "model.safetensors"
    folder.mkdir()
    Image.fromarray(PHOTO).save(latent_file.parent / "photo.png")
    before = snapshot(latent_file.parent, out)
    result = run_cli(*FOLDER_AS_FILE[flag](folder, latent_file, out))
    assert_refused(result, before, latent_file.parent, out, match=f"{folder} is a folder")
