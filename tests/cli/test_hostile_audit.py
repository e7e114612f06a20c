"""Cases a wider hostile-input audit found beyond the other hostile tests: an output that names one of the command's
own inputs (even with --overwrite) and an empty output name. Each keeps the contract of tests/contract.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from tests.contract import assert_refused, run_cli, snapshot

from latentbridge import io

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_tiny_cache")

PHOTO = Path(__file__).resolve().parents[2] / "src" / "latentbridge" / "data" / "examples" / "bee.jpg"


@pytest.fixture
def inputs(tmp_path, model_file) -> Path:
    """A folder holding an SD1 latent, a photo and the tiny autoencoder, as a user's working folder would."""
    folder = tmp_path / "in"
    folder.mkdir()
    io.save_latent(folder / "x.safetensors", torch.randn(1, 4, 8, 8), space="sd1", domain="model")
    shutil.copy(PHOTO, folder / "bee.jpg")
    shutil.copy(model_file, folder / "tiny_sd1.safetensors")
    return folder


OWN_INPUT = {  # command -> (arguments, the input that -o names); every one with --overwrite
    "upscale onto its latent": (["upscale", "{in}/x.safetensors", "--method", "bicubic", "--scale", "2"],
                                "{in}/x.safetensors"),
    "upscale onto its latent, spelt another way": (["upscale", "{in}/x.safetensors", "--method", "bicubic",
                                                    "--scale", "2"], "{in}/../in/./x.safetensors"),
    "upscale onto its --model": (["upscale", "{in}/x.safetensors", "--model", "{in}/tiny_sd1.safetensors",
                                  "--scale", "2"], "{in}/tiny_sd1.safetensors"),
    "convert onto its latent": (["convert", "{in}/x.safetensors", "--to", "sd1", "--domain", "model"],
                                "{in}/x.safetensors"),
    "encode onto its --model": (["encode", "{in}/bee.jpg", "--model", "{in}/tiny_sd1.safetensors", "--fit", "crop"],
                                "{in}/tiny_sd1.safetensors"),
}


@pytest.mark.parametrize("case", sorted(OWN_INPUT))
def test_an_output_that_is_one_of_the_inputs_is_refused_even_with_overwrite(inputs, case):
    argv, output = OWN_INPUT[case]
    fill = [a.replace("{in}", str(inputs)) for a in argv]
    before = snapshot(inputs)
    result = run_cli(*fill, "-o", output.replace("{in}", str(inputs)), "--overwrite")
    assert_refused(result, before, inputs, match="also an input")


def test_an_output_reached_through_a_link_to_the_input_is_refused(inputs, tmp_path):
    link = tmp_path / "link.safetensors"
    os.symlink(inputs / "x.safetensors", link)
    before = snapshot(inputs, tmp_path)
    result = run_cli("upscale", inputs / "x.safetensors", "--method", "bicubic", "--scale", "2", "-o", link,
                     "--overwrite")
    assert_refused(result, before, inputs, tmp_path, match="also an input")


def test_an_output_beside_the_input_with_another_name_is_written(inputs):
    result = run_cli("upscale", inputs / "x.safetensors", "--method", "bicubic", "--scale", "2", "-o",
                     inputs / "x2.safetensors")
    assert result.code == 0, result.err
    assert io.load_latent(inputs / "x2.safetensors").tensor.shape == (1, 4, 16, 16)


@pytest.mark.parametrize("command", [
    ["upscale", "{in}/x.safetensors", "--method", "bicubic", "--scale", "2"],
    ["convert", "{in}/x.safetensors", "--to", "sd1"],
    ["preview", "{in}/x.safetensors"],
    ["decode", "{in}/x.safetensors", "--model", "{in}/tiny_sd1.safetensors"],
    ["decode", "{in}/two.safetensors", "--model", "{in}/tiny_sd1.safetensors"],  # a batch: numbered names
    ["encode", "{in}/bee.jpg", "--model", "{in}/tiny_sd1.safetensors", "--fit", "crop"],
], ids=["upscale", "convert", "preview", "decode", "decode-batch", "encode"])
def test_an_empty_output_name_is_refused(inputs, command, monkeypatch, tmp_path):
    io.save_latent(inputs / "two.safetensors", torch.randn(2, 4, 8, 8), space="sd1", domain="model")
    monkeypatch.chdir(tmp_path)  # '' would otherwise mean the folder the tests run in
    before = snapshot(tmp_path)
    assert_refused(run_cli(*[a.replace("{in}", str(inputs)) for a in command], "-o", ""), before, tmp_path)


def test_a_named_previewer_that_is_nowhere_is_refused_not_replaced_by_the_shipped_one(inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(inputs, out)
    result = run_cli("preview", inputs / "x.safetensors", "--previewer", "my_previewer", "-o", out / "p.png")
    assert_refused(result, before, inputs, out, match="my_previewer")


def test_a_tiny_decoder_of_another_space_with_the_same_channels_is_refused(tmp_path):
    """TAEF2 (32 channels at 1/8) and Sana latents (32 channels at 1/32): decoding one with the other gave garbage."""
    from tests.conftest import shared_file

    decoder = shared_file("taef2_decoder.pth")
    latent = Path(__file__).resolve().parents[2] / "src" / "latentbridge" / "data" / "examples" / "sana.safetensors"
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(out)
    result = run_cli("decode", latent, "--model", decoder, "-o", out / "d.png")
    assert_refused(result, before, out, match="cannot serve sana")


def test_demo_never_replaces_files_in_a_folder_it_did_not_write(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "preview.png").write_bytes(b"the user's own picture")
    before = snapshot(tmp_path)
    assert_refused(run_cli("demo", "-o", folder), before, tmp_path, match="not empty")
    assert_refused(run_cli("demo", "-o", ""), before, tmp_path, match="names no folder")


def test_demo_reruns_into_its_own_folder(tmp_path):
    assert run_cli("demo", "-o", tmp_path / "demo").code == 0
    rerun = run_cli("demo", "-o", tmp_path / "demo")
    assert rerun.code == 0, rerun.err


def test_a_line_break_in_a_file_name_keeps_the_error_on_one_line(tmp_path):
    before = snapshot(tmp_path)
    result = run_cli("info", tmp_path / "miss\ning.safetensors")
    assert_refused(result, before, tmp_path, match="miss\\ning.safetensors: no such file")
