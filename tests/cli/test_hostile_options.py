"""Hostile sizes, empty latents, devices and option values: every command refuses them with exit 2, one ``error:``
line naming its own flags, nothing written and the inputs unchanged."""

from __future__ import annotations

import pytest
import torch

from latentbridge import io

from ..contract import assert_refused, run_cli, snapshot


@pytest.fixture
def files(tmp_path, monkeypatch):
    """The working folder: latents (SD1, FLUX.2, empty ones) and images, one named like the SD1 latent."""
    monkeypatch.chdir(tmp_path)
    io.save_latent(tmp_path / "sd1.safetensors", torch.randn(1, 4, 8, 8), space="sd1", domain="raw")
    io.save_latent(tmp_path / "flux2.safetensors", torch.randn(1, 128, 4, 4), space="flux2", domain="model")
    torch.save(torch.randn(1, 4, 0, 0), tmp_path / "empty.pt")
    torch.save(torch.randn(0, 4, 8, 8), tmp_path / "no_batch.pt")
    torch.save(torch.randn(1, 128, 0, 4), tmp_path / "flux2_empty.pt")
    images = tmp_path / "images"
    images.mkdir()
    for name in ("sd1", "b", "c", "d"):
        io.save_image(images / f"{name}.png", torch.rand(1, 3, 64, 64))
    return tmp_path


def refused(folder, *argv, match: str) -> None:
    before = snapshot(folder)
    assert_refused(run_cli(*argv), before, folder, match=match)


RESOURCES = {
    "upscale --scale 1e6": (["upscale", "sd1.safetensors", "--scale", "1e6", "--method", "bicubic", "-o", "o.latent"],
                            "would stand for 64000000x64000000 pixels"),
    "upscale --width 8000000": (["upscale", "sd1.safetensors", "--width", "8000000", "--method", "bicubic", "-o",
                                 "o.latent"], "would stand for 8000000x8000000 pixels"),
    "upscale learned --scale 1e5": (["upscale", "flux2.safetensors", "--scale", "1e5", "-o", "o.latent"],
                                    "would stand for 6400000x6400000 pixels"),
    "preview --size 100000": (["preview", "sd1.safetensors", "--size", "100000", "-o", "p.png"],
                              "would stand for 100000x100000 pixels"),
    "plot-schedule --steps 1e8": (["plot-schedule", "--steps", "100000000", "-o", "s.png"],
                                  "--steps 100000000 is above the limit of 100,000 steps set by $LATENTBRIDGE_MAX_STEPS"),
    "fit-preview --size 100000": (["fit-preview", "--latents", "sd1.safetensors", "--images", "images", "--size",
                                   "100000", "-o", "f.safetensors"], "would stand for 100000x100000 pixels"),
}


@pytest.mark.parametrize(("argv", "match"), list(RESOURCES.values()), ids=list(RESOURCES))
def test_outputs_beyond_the_size_limit_are_refused_up_front_with_the_size_and_the_setting(files, argv, match):
    refused(files, *argv, match=match)
    refused(files, *argv, match="raise the limit with $LATENTBRIDGE_MAX_")


def test_the_size_limit_is_a_setting(files, monkeypatch):
    monkeypatch.setenv("LATENTBRIDGE_MAX_PIXELS", str(128 * 128))
    assert run_cli("upscale", files / "sd1.safetensors", "--scale", 2, "--method", "bicubic", "-o",
                   files / "ok.safetensors").code == 0
    refused(files, "upscale", "sd1.safetensors", "--scale", "2.5", "--method", "bicubic", "-o", "o.latent",
            match="160x160 pixels (25,600 in all), above the limit of 16,384")


EMPTY_COMMANDS = {
    "info": ["info", "{}"],
    "preview": ["preview", "{}", "--space", "sd1", "-o", "p.png"],
    "upscale": ["upscale", "{}", "--space", "sd1", "--scale", "2", "--method", "bicubic", "-o", "o.safetensors"],
    "decode": ["decode", "{}", "--space", "sd1", "-o", "d.png"],
    "convert": ["convert", "{}", "--from", "flux2", "--domain", "model", "--to", "sana", "-o", "c.safetensors"],
    "convert --dry-run": ["convert", "{}", "--from", "flux2", "--domain", "model", "--to", "sana", "--dry-run"],
}


@pytest.mark.parametrize("latent", ["empty.pt", "no_batch.pt", "flux2_empty.pt"])
@pytest.mark.parametrize("argv", list(EMPTY_COMMANDS.values()), ids=list(EMPTY_COMMANDS))
def test_empty_latents_are_refused_by_every_command(files, argv, latent):
    refused(files, *[a.format(latent) for a in argv], match="is empty (shape (")


DEVICE_COMMANDS = {
    "decode": ["decode", "sd1.safetensors", "-o", "d.png"],
    "encode": ["encode", "images/b.png", "--model", "taesd", "-o", "e.safetensors"],
    "convert": ["convert", "flux2.safetensors", "--to", "sana", "-o", "c.safetensors"],
    "fit-preview": ["fit-preview", "--encoder", "taesd", "--images", "images", "-o", "f.safetensors"],
    "dataset build": ["dataset", "build", "--images", "images", "--encoders", "taesd", "-o", "data"],
}
DEVICES = {"foo": "--device foo is not a device: use one of cpu"}
if not torch.cuda.is_available():
    DEVICES["cuda"] = "--device cuda needs a torch built with CUDA and a GPU; this one has none: use one of cpu"


@pytest.mark.parametrize("device", list(DEVICES))
@pytest.mark.parametrize("argv", list(DEVICE_COMMANDS.values()), ids=list(DEVICE_COMMANDS))
def test_every_command_with_a_device_refuses_one_this_machine_lacks(files, argv, device):
    refused(files, *argv, "--device", device, match=DEVICES[device])


OPTIONS = {
    "fit-preview --size 0": (["fit-preview", "--latents", "sd1.safetensors", "--images", "images", "--size", "0"],
                             "--size 0 is not a positive number of pixels"),
    "fit-preview --ridge nan": (["fit-preview", "--latents", "sd1.safetensors", "--images", "images", "--ridge", "nan"],
                                "--ridge nan is not a finite number >= 0"),
    "fit-preview --ridge -1": (["fit-preview", "--latents", "sd1.safetensors", "--images", "images", "--ridge", "-1"],
                               "--ridge -1.0 is not a finite number >= 0"),
    "fit-preview --patch 0": (["fit-preview", "--latents", "sd1.safetensors", "--images", "images", "--patch", "0"],
                              "--patch 0 is not a whole number >= 1"),
    "preview --duration -5": (["preview", "sd1.safetensors", "sd1.safetensors", "--animate", "--duration", "-5", "-o",
                               "a.webp"], "--duration -5 is not a whole number of milliseconds >= 1"),
    "preview --size 0": (["preview", "sd1.safetensors", "--size", "0", "-o", "p.png"],
                         "--size 0 is not a positive whole number of pixels"),
    "preview --size -5": (["preview", "sd1.safetensors", "--size", "-5", "-o", "p.png"], "--size -5 is not a positive"),
    "preview --form without --factors": (["preview", "sd1.safetensors", "--form", "affine", "-o", "p.png"],
                                         "--form affine picks a form of a factors file: give the file with --factors"),
    "upscale --width 0": (["upscale", "sd1.safetensors", "--width", "0", "-o", "o.latent"],
                          "--width 0 is not a positive multiple of sd1's 8-pixel latent cells in the raw domain: use 8"),
    "upscale --width -8": (["upscale", "sd1.safetensors", "--width", "-8", "-o", "o.latent"],
                           "--width -8 is not a positive multiple"),
    "upscale --height 13": (["upscale", "sd1.safetensors", "--height", "13", "-o", "o.latent"], "use 8 or 16"),
    "upscale --scale nan": (["upscale", "sd1.safetensors", "--scale", "nan", "-o", "o.latent"],
                            "--scale nan is not a positive number"),
    "upscale --scale inf": (["upscale", "sd1.safetensors", "--scale", "inf", "-o", "o.latent"],
                            "--scale inf is not a positive number"),
    "upscale --scale -2": (["upscale", "sd1.safetensors", "--scale", "-2", "-o", "o.latent"],
                           "--scale -2.0 is not a positive number"),
    "decode --tile 0": (["decode", "sd1.safetensors", "--tile", "0", "-o", "d.png"],
                        "--tile 0 is not a whole number of latent pixels >= 1"),
    "encode --tile -2": (["encode", "images/b.png", "--tile", "-2", "-o", "e.safetensors"],
                         "--tile -2 is not a whole number of latent pixels >= 1"),
    "plot-schedule --steps 0": (["plot-schedule", "--steps", "0", "-o", "s.png"], "steps must be a positive integer"),
    "plot-schedule --alpha-1 nan": (["plot-schedule", "--alpha-1", "nan", "-o", "s.png"], "alpha_1 must be > 0"),
    "plot-schedule --start nan": (["plot-schedule", "--start", "nan", "-o", "s.png"], "start is a fraction"),
    "plot-schedule --max 2": (["plot-schedule", "--max", "2", "-o", "s.png"], "got --min 0.0, --max 2.0"),
}


@pytest.mark.parametrize(("argv", "match"), list(OPTIONS.values()), ids=list(OPTIONS))
def test_invalid_option_values_are_refused_before_anything_is_written(files, argv, match):
    if argv[0] == "fit-preview":
        argv = [*argv, "-o", "f.safetensors"]
    refused(files, *argv, match=match)


def test_a_width_that_is_no_multiple_suggests_only_valid_sizes(files):
    result = run_cli("upscale", files / "sd1.safetensors", "--width", "0", "-o", files / "o.latent")
    assert result.err.rstrip().endswith("use 8") and "or 0" not in result.err
