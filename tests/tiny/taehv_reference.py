"""Random-weight models in the upstream TAEHV and TAESDV layouts, built with the reference code at test time.

The reference files (madebyollin's taehv.py, taehv_wide_branch.py and taesdv.py, MIT) are imported from
../shared/upstream and never copied here; tests skip with the reason where they are absent. Weights are drawn so
that activations neither vanish nor explode, then the decoder's output convolution is scaled so that decoded
pixels spread around 0.5 well inside [0, 1]: a saturated decoder would prove nothing.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import save_file
from tests.conftest import SHARED

UPSTREAM = SHARED / "upstream"
OUTPUT_STD = 0.12
CALIBRATION_SIZE = {"taesdv": 4, "taeltx2_3_wide": 1}  # latent pixels per side the tests decode (default 2)

# published name -> (reference module, constructor options that give its layout without a file name)
LAYOUTS: dict[str, tuple[str, dict]] = {
    "taew2_1": ("taehv", {}),
    "taecvx": ("taehv", {}),
    "taew2_2": ("taehv", {"patch_size": 2, "latent_channels": 48}),
    "taehv1_5": ("taehv", {"patch_size": 2, "latent_channels": 32}),
    "taeltx_2": ("taehv", {"patch_size": 4, "latent_channels": 128, "encoder_time_downscale": (True, True, True),
                           "decoder_time_upscale": (True, True, True)}),
    "taew2_2_super": ("taehv", {"patch_size": 2, "latent_channels": 48, "arch_variant": "super"}),
    "taeltx2_3_wide": ("taehv_wide_branch", {}),  # the wide decoder exists only under its published name
    "taesdv": ("taesdv", {}),
}


def reference(module: str) -> ModuleType:
    """Import ``../shared/upstream/<module>.py`` (skip when absent)."""
    path = UPSTREAM / f"{module}.py"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the reference taehv.py / taesdv.py live in ../shared/upstream (not committed)")
    spec = importlib.util.spec_from_file_location(f"upstream_{module}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def random_state(state: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Conv weights ~ N(0, 1 / fan_in), biases ~ N(0, 0.05): signals keep their scale through the network."""
    out = {}
    for key, value in state.items():
        if value.ndim == 4:
            std = math.sqrt(1.0 / value[0].numel())
            out[key] = torch.randn(value.shape, generator=generator) * std
        else:
            out[key] = torch.randn(value.shape, generator=generator) * 0.05
    return out


def build(name: str, folder: Path, *, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """Write ``<folder>/<name>.pth`` and ``<folder>/safetensors/<name>.safetensors`` (upstream's two layouts) with
    random weights in the layout of ``name``; return the .pth path and the reference model loaded from it."""
    module, options = LAYOUTS[name]
    ref = reference(module)
    generator = torch.Generator().manual_seed(seed)
    path = folder / f"{name}.pth"
    if module == "taesdv":
        state = random_state(ref.TAESDV(checkpoint_path=None).state_dict(), generator)
    elif module == "taehv_wide_branch":
        state = random_state(_wide_state(ref), generator)
    else:
        state = random_state(ref.TAEHV(checkpoint_path=None, **options).state_dict(), generator)
    torch.save(state, path)
    model = _load(ref, module, path)
    _calibrate(model, state, CALIBRATION_SIZE.get(name, 2))
    torch.save(state, path)
    (folder / "safetensors").mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "safetensors" / f"{name}.safetensors"))
    return path, _load(ref, module, path)


def _wide_state(ref: ModuleType) -> dict[str, torch.Tensor]:
    """The wide branch builds its decoder only for a file named taeltx2_3_wide: assemble one from its classes."""
    base = ref.TAEHV(checkpoint_path=None, patch_size=4, latent_channels=128, encoder_time_downscale=(True, True, True),
                     decoder_time_upscale=(True, True, True))
    state = {k: v for k, v in base.state_dict().items() if k.startswith("encoder.")}
    widths = (1024, 512, 256, 64)
    layers: list[torch.nn.Module] = [ref.Clamp(), ref.conv(128, widths[0]), torch.nn.ReLU()]
    for n, m in itertools.pairwise(widths):
        layers += [ref.WideMemBlock(n, n), ref.WideMemBlock(n, n), ref.WideMemBlock(n, n), torch.nn.Upsample(scale_factor=2),
                   ref.TGrow(n, 2), ref.conv(n, m, bias=False)]
    layers += [torch.nn.ReLU(), ref.conv(widths[-1], 48)]
    state.update({f"decoder.{k}": v for k, v in torch.nn.Sequential(*layers).state_dict().items()})
    return state


def _load(ref: ModuleType, module: str, path: Path) -> torch.nn.Module:
    model = ref.TAESDV(checkpoint_path=str(path)) if module == "taesdv" else ref.TAEHV(checkpoint_path=str(path))
    return model.eval().requires_grad_(False)


def _calibrate(model: torch.nn.Module, state: dict[str, torch.Tensor], size: int) -> None:
    """Scale the decoder's output conv so decoded pixels have std OUTPUT_STD around 0.5 (written into ``state``)."""
    last = model.decoder[-1]
    key = next(k for k, p in model.named_parameters() if p is last.weight)
    channels = model.latent_channels if hasattr(model, "latent_channels") else 4
    seen: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        last.bias.fill_(0.5)
        model.decode_video(torch.randn(1, 3, channels, size, size, generator=torch.Generator().manual_seed(1)),
                           **({"show_progress_bar": False} if hasattr(model, "t_upscale") else {}))
    hook.remove()
    scale = OUTPUT_STD / float(seen[0].std())
    state[key] = state[key] * scale
    state[key.replace("weight", "bias")] = torch.full_like(state[key.replace("weight", "bias")], 0.5)


def reference_decode(model: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The reference decode of NCTHW latents, as NCTHW frames clamped to [0, 1] (taesdv.py leaves them unclamped)."""
    with torch.no_grad():
        kwargs = {"show_progress_bar": False} if hasattr(model, "t_upscale") else {}
        return model.decode_video(z.transpose(1, 2), **kwargs).transpose(1, 2).clamp(0, 1)


def reference_encode(model: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        kwargs = {"show_progress_bar": False} if hasattr(model, "t_upscale") else {}
        return model.encode_video(frames.transpose(1, 2), **kwargs).transpose(1, 2)


def saturated(frames: torch.Tensor) -> float:
    """Fraction of decoded values sitting at the clamp."""
    return float(((frames <= 0) | (frames >= 1)).float().mean())
