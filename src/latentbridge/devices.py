"""Device names, checked once for every function and command that takes ``device=``.

torch accepts ``"cuda"`` on a CPU-only build and fails at the first tensor moved there, with an AssertionError; an
unknown name fails with a list of every backend torch was ever built for. :func:`resolve` answers both up front
with the devices this machine really has.
"""

from __future__ import annotations

import torch

from .errors import InputError

AUTO = "auto"


def available() -> list[str]:
    """The devices this process can use: ``cpu``, then each CUDA GPU, then ``mps`` and ``xpu`` where present."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        found += [f"xpu:{i}" for i in range(xpu.device_count())]
    return found


def resolve(device: str | torch.device | None, *, default: str | torch.device = "cpu") -> torch.device:
    """``device`` as a :class:`torch.device` this machine has; ``None`` means ``default`` and ``"auto"`` the first
    GPU when there is one, else the CPU. CUDA, MPS and XPU devices are checked against what this machine has, other
    backends (a host's, such as DirectML) by placing an empty tensor there; a device that fails gets an
    :class:`InputError` naming what is available."""
    named = device is not None  # the caller's own choice; a default follows the tensors it came from
    if device is None:
        device = default
    if isinstance(device, str) and device.strip().lower() == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device.strip() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"device={device!r} is not a device: use {_choices()}") from None
    if dev.type == "meta" and named:
        raise InputError(f"device={str(device)!r} holds no data, so nothing can run there: use {_choices()}")
    if dev.type in ("cpu", "meta"):
        return dev
    count = {"cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
             "mps": 1 if "mps" in available() else 0,
             "xpu": torch.xpu.device_count() if "xpu:0" in available() else 0}.get(dev.type)
    if count is None:  # a backend of a host or plug-in (DirectML's privateuseone, XLA, ...): ask torch itself
        try:
            torch.empty(0, device=dev)
        except (RuntimeError, AssertionError, TypeError, ValueError):
            raise InputError(f"device={str(device)!r} is not a device this machine has: use {_choices()}") from None
        return dev
    if count == 0:
        why = ("needs a torch built with CUDA and a GPU; this one has none" if dev.type == "cuda"
               else "is not available in this torch build")
        raise InputError(f"device={str(device)!r} {why}: use {_choices()}")
    if dev.index is not None and dev.index >= count:
        raise InputError(f"device={str(device)!r}: there is no {dev.type} device {dev.index}; use {_choices()}")
    return dev


def _choices() -> str:
    return f"one of {', '.join([*available(), AUTO])}"


def compute_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype a model runs in for a caller's tensor of ``dtype`` on ``device``: the caller's own, except float16
    on a CPU, where most processors have no float16 arithmetic (convolutions 5x slower than float32): float32.
    Model files keep their weights in float32, float16 or bfloat16 whatever this says: they are cast on loading."""
    return torch.float32 if device.type == "cpu" and dtype == torch.float16 else dtype
