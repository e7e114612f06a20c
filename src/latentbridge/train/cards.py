"""Trained-model files: safetensors with a metadata block, plus a short Markdown model card beside them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .. import weights
from ..io import atomic_path


def save_model(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], card: str, *,
               dtype: str = "float32") -> list[Path]:
    """Write ``path`` (safetensors; metadata values JSON-encoded unless strings) with its weights kept in ``dtype``
    (:func:`latentbridge.weights.stored`), and ``path`` with ``.md``."""
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    data, meta = weights.stored(tensors, meta, dtype)
    with atomic_path(path, overwrite=True) as tmp:
        save_file(data, str(tmp), metadata=meta)
    card_path = path.with_suffix(".md")
    with atomic_path(card_path, overwrite=True) as tmp:
        tmp.write_text(card)
    return [path, card_path]


def card_text(title: str, facts: dict[str, Any], metrics: dict[str, float], notes: str = "") -> str:
    """A model card: what it is, how it was trained (recipe, data, steps, time, device) and held-out metrics."""
    lines = [f"# {title}", ""]
    if notes:
        lines += [notes.strip(), ""]
    lines += ["## Training", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts.items()]
    lines += ["", "## Held-out metrics", ""]
    lines += [f"- **{k}**: {v:.4f}" if isinstance(v, float) else f"- **{k}**: {v}" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"
