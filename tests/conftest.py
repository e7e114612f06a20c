"""Shared fixtures: paths to the real weights and photos in ../shared (tests skip with the reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from latentbridge.tiny import layouts

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LATENTBRIDGE_SHARED", ROOT.parent / "shared"))
SHARED_WEIGHTS = SHARED / "weights" / "taesd"
SHARED_PHOTOS = SHARED / "data" / "photos"


@pytest.fixture(autouse=True)
def _seed_and_isolate(monkeypatch, tmp_path_factory):
    """Seed torch, keep the user's model folders and the network out of every test."""
    torch.manual_seed(0)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LATENTBRIDGE_MODELS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def one_thread():
    """Small tensors: one thread avoids the OpenMP hand-offs that dominate on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fresh_tiny_cache():
    """No tiny autoencoder cached by an earlier test."""
    from latentbridge import tiny

    tiny.clear_cache()
    yield
    tiny.clear_cache()


def shared_file(name: str) -> Path:
    path = SHARED_WEIGHTS / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: the real TAESD weights live in ../shared/weights/taesd (not committed)")
    return path


@pytest.fixture
def photos() -> list[Path]:
    if not SHARED_PHOTOS.is_dir():
        pytest.skip(f"{SHARED_PHOTOS} is absent: the real photos live in ../shared/data/photos (not committed)")
    return sorted(SHARED_PHOTOS.glob("photo_*.jpg"))


SHARED_WAN_LATENT = SHARED / "data" / "latents" / "wan21_test_latents.pth"


@pytest.fixture
def wan_latent() -> torch.Tensor:
    """The real Wan 2.1 latent of ../shared (model domain), permuted from its NTCHW file to (1, 16, 16, 40, 64) NCTHW."""
    if not SHARED_WAN_LATENT.is_file():
        pytest.skip(f"{SHARED_WAN_LATENT} is absent: the real Wan 2.1 latent lives in ../shared/data/latents "
                    "(not committed)")
    return torch.load(SHARED_WAN_LATENT, map_location="cpu", weights_only=True).permute(0, 2, 1, 3, 4).contiguous()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A small random standard 4-channel tiny autoencoder that says it serves SD1 (diffusers layout)."""
    torch.manual_seed(0)
    tensors = {f"encoder.layers.{k}": v for k, v in layouts.build("encoder", "standard", 4).state_dict().items()}
    for k, v in layouts.build("decoder", "standard", 4).state_dict().items():
        index, rest = k.split(".", 1)
        tensors[f"decoder.layers.{int(index) - 1}.{rest}"] = v
    path = tmp_path_factory.mktemp("models") / "tiny_sd1.safetensors"
    save_file(tensors, str(path), metadata={"latentbridge.space": "sd1"})
    return path


@pytest.fixture
def preview_rungs(tmp_path_factory, monkeypatch):
    """A maker of random neural previewers saved as the previewer recipe exports them (the recipe's model class,
    metadata and save function): ``make(space, scale, folder=None, name_scale=None) -> path``, in ``folder`` or a
    folder named in LATENTBRIDGE_MODELS, under the file name of the rung of ``name_scale`` (default: ``scale``).
    The shipped previewers are out of sight (an empty package model folder), so a test sees only the rungs it made."""
    from latentbridge import spaces, weights
    from latentbridge.preview.neural import Previewer, PreviewerConfig, file_name, metadata
    from latentbridge.train.cards import save_model

    monkeypatch.setattr(weights, "PACKAGE_MODELS", tmp_path_factory.mktemp("package_models"))
    user = tmp_path_factory.mktemp("user_models")
    monkeypatch.setenv(weights.ENV_DIRS, str(user))
    weights.clear_cache()

    def make(space: str, scale: int, *, folder: Path | None = None, name_scale: int | None = None) -> Path:
        sp = spaces.get(space)
        cfg = PreviewerConfig(sp.taesd_channels, width=8, scale=scale, patch=sp.packing.patch if sp.packing else 1,
                              context=1)
        net = Previewer(cfg)
        torch.nn.init.normal_(net.body[-1].weight, std=0.1)
        path = (folder or user) / file_name(space, scale if name_scale is None else name_scale)
        save_model(path, net.state_dict(), metadata(cfg, space), "# random test previewer\n")
        return path

    yield make
    weights.clear_cache()
