"""One device check for every function that takes ``device=``: names the device and what this machine has."""

from __future__ import annotations

import pytest
import torch

from latentbridge import devices, interposer, tiny
from latentbridge.errors import InputError
from latentbridge.preview import neural
from latentbridge.train import load_encoder
from latentbridge.upscale import learned

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


def test_resolve_gives_torch_devices_this_machine_has():
    assert devices.resolve(None) == torch.device("cpu")
    assert devices.resolve(" cpu ") == torch.device("cpu")
    assert devices.resolve(torch.device("cpu")) == torch.device("cpu")
    assert devices.resolve(None, default=torch.device("meta")) == torch.device("meta")
    assert devices.resolve("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert devices.available()[0] == "cpu"


def test_a_backend_of_a_host_is_accepted_when_torch_can_place_a_tensor_there(monkeypatch):
    with pytest.raises(InputError, match="device='ipu' is not a device this machine has: use one of cpu"):
        devices.resolve("ipu")
    placed = []
    monkeypatch.setattr(torch, "empty", lambda *shape, device: placed.append(device))  # as if the backend had one
    assert devices.resolve("ipu") == torch.device("ipu") == placed[0]


@pytest.mark.parametrize("name", ["foo", "", "cuda:x", 3.5])
def test_an_unknown_device_is_refused_with_the_available_ones(name):
    with pytest.raises(InputError, match=r"device=.* is not a device: use one of cpu.*auto"):
        devices.resolve(name)


@NO_CUDA
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:7"])
def test_cuda_on_a_machine_without_it_is_refused_up_front(name):
    with pytest.raises(InputError, match=rf"device='{name}' needs a torch built with CUDA and a GPU; this one has none: "
                                         "use one of cpu"):
        devices.resolve(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_index_past_the_last_is_refused():
    with pytest.raises(InputError, match="there is no cuda device"):
        devices.resolve(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("call", [
    lambda d: tiny.load("taef2", device=d),
    lambda d: interposer.convert(torch.randn(1, 128, 2, 2), "flux2", "sana", domain="model", device=d),
    lambda d: learned.load("flux2", device=d),
    lambda d: neural.load("flux2", device=d),
    lambda d: load_encoder("taef2", device=d),
], ids=["tiny.load", "interposer.convert", "upscale.learned.load", "preview.neural.load", "train.load_encoder"])
@pytest.mark.parametrize("device", ["foo", *(["cuda"] if not torch.cuda.is_available() else [])])
def test_every_function_that_takes_a_device_checks_it_first(call, device):
    with pytest.raises(InputError, match=f"device='{device}'"):
        call(device)


def test_models_compute_in_the_callers_dtype_except_float16_on_a_cpu():
    cpu = torch.device("cpu")
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        assert devices.compute_dtype(dtype, cpu) == dtype
    assert devices.compute_dtype(torch.float16, cpu) == torch.float32
    assert devices.compute_dtype(torch.float16, torch.device("cuda")) == torch.float16
