"""Misuse of the Python API that a wider hostile-input audit found: each raises the project's InputError (never a
bare TypeError, AttributeError or torch error) and leaves the caller's tensors and files as they were."""

from __future__ import annotations

import pytest
import torch

from latentbridge import io
from latentbridge.errors import InputError

LATENT = torch.randn(1, 4, 8, 8)
META = torch.empty(1, 3, 8, 8, device="meta")

PATHS = {  # a path argument that is not a path
    "load_latent None": lambda tmp: io.load_latent(None),
    "load_latent int": lambda tmp: io.load_latent(5),
    "load_latent bytes": lambda tmp: io.load_latent(b"x.safetensors"),
    "load_latent NUL": lambda tmp: io.load_latent("a\0b.safetensors"),
    "load_image None": lambda tmp: io.load_image(None),
    "save_latent None": lambda tmp: io.save_latent(None, LATENT),
    "save_latent empty": lambda tmp: io.save_latent("", LATENT),
    "save_image None": lambda tmp: io.save_image(None, torch.rand(1, 3, 8, 8)),
}

IMAGES = {  # images that save_image cannot write faithfully
    "None": (None, {}),
    "text": ("abc", {}),
    "8-bit integers": (torch.full((1, 3, 8, 8), 200, dtype=torch.uint8), {}),
    "meta tensor": (META, {}),
    "nrow 0": (torch.rand(2, 3, 8, 8), {"nrow": 0}),
    "nrow -1": (torch.rand(2, 3, 8, 8), {"nrow": -1}),
    "nrow 1.5": (torch.rand(2, 3, 8, 8), {"nrow": 1.5}),
}


@pytest.mark.parametrize("case", sorted(PATHS))
def test_a_path_that_is_not_a_path_is_an_input_error(tmp_path, case):
    with pytest.raises(InputError, match="file path|file name"):
        PATHS[case](tmp_path)


@pytest.mark.parametrize("case", sorted(IMAGES))
def test_save_image_refuses_what_it_cannot_write(tmp_path, case):
    images, options = IMAGES[case]
    with pytest.raises(InputError):
        io.save_image(tmp_path / "x.png", images, **options)
    assert list(tmp_path.iterdir()) == []
