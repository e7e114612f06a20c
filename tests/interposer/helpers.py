"""Small interposer model files for tests: v4.0 layout with known weights, and our own format."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from latentbridge import spaces
from latentbridge.interposer import BridgeConfig, BridgeNet, V4Config, V4Interposer, bridge_metadata, v4_filename
from latentbridge.train.cards import save_model


def known_weights(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic non-trivial weights for every entry of ``model.state_dict()`` (BatchNorm stats included)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(1000 + seed, dtype=torch.int64)
        elif k.endswith("running_var"):
            out[k] = 0.5 + torch.rand(v.shape, generator=g)
        elif k.endswith(("running_mean", "bias")):
            out[k] = 0.3 * torch.randn(v.shape, generator=g)
        elif v.ndim == 1:  # BatchNorm scale
            out[k] = 1 + 0.1 * torch.randn(v.shape, generator=g)
        else:
            out[k] = torch.randn(v.shape, generator=g) / v[0].numel() ** 0.5
    return out


def write_v4(folder: Path, src: str, dst: str, seed: int = 0) -> Path:
    """A v4.0-layout file under its published name, with known weights."""
    a, b = spaces.get(src), spaces.get(dst)
    net = V4Interposer(V4Config(a.channels, b.channels, scale=a.downscale / b.downscale))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / v4_filename(a, b)
    save_file(known_weights(net, seed), str(path))
    return path


def write_bridge(folder: Path, src: str, dst: str, *, domain: str = "taesd", width: int = 8, blocks: int = 1,
                 seed: int = 0, name: str | None = None, storage: str = "float32") -> Path:
    """One of our interposer files with small random weights."""
    a, b = spaces.get(src), spaces.get(dst)
    ratio = a.downscale_in(domain) / b.downscale_in(domain)
    torch.manual_seed(seed)
    net = BridgeNet(BridgeConfig.for_ratio(a.channels_in(domain), b.channels_in(domain), ratio, width=width,
                                           blocks=blocks, hi_width=4))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{a.id}-to-{b.id}.safetensors")
    meta = bridge_metadata(net, src=a.id, dst=b.id, domain_in=domain, domain_out=domain, metrics={"rel_mse": 0.5})
    save_model(path, net.state_dict(), meta, "# test model\n", dtype=storage)
    return path
