"""scripts/half_models.py: a model file rewritten at another storage dtype, its metadata kept."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from safetensors.torch import save_file

from latentbridge import weights

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "half_models.py"


def _script():
    spec = importlib.util.spec_from_file_location("half_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(path: Path) -> dict[str, torch.Tensor]:
    tensors = {"w": torch.randn(8, 8), "steps": torch.tensor([3])}
    meta = weights.model_metadata(kind="upscaler", spaces=["sd1"], domains=["taesd"], config={"n": 8})
    save_file(tensors, str(path), metadata={**meta, "latentbridge.card": "{}"})
    return tensors


def test_files_are_rewritten_at_their_dtype_with_their_metadata_and_the_dtype_recorded(tmp_path, capsys):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    ta, tb = _model(a), _model(b)
    _, before = weights.load_tensors(a)
    assert _script().main([str(a), f"{b}:bfloat16"]) == 0
    (wa, ma), (wb, mb) = weights.load_tensors(a), weights.load_tensors(b)
    assert torch.equal(wa["w"], ta["w"].half()) and torch.equal(wb["w"], tb["w"].bfloat16())
    assert torch.equal(wa["steps"], ta["steps"])
    assert ma == {**before, "latentbridge.storage": "float16"} and mb["latentbridge.storage"] == "bfloat16"
    assert "a.safetensors: float16" in capsys.readouterr().out


def test_out_folder_leaves_the_file_alone_and_a_file_without_metadata_is_refused(tmp_path, capsys):
    a = tmp_path / "a.safetensors"
    _model(a)
    before = a.read_bytes()
    assert _script().main([str(a), "-o", str(tmp_path / "out")]) == 0
    assert a.read_bytes() == before and weights.load_tensors(tmp_path / "out" / "a.safetensors")[0]["w"].dtype == torch.float16
    save_file({"w": torch.zeros(2)}, str(tmp_path / "bare.safetensors"))
    assert _script().main([str(tmp_path / "bare.safetensors")]) == 2
    assert capsys.readouterr().err.count("error:") == 1
