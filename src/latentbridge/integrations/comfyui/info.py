"""Latent Info: what a LATENT is (shape, space, image size) and its statistics, as text."""

from __future__ import annotations

from typing import Any

import torch

from latentbridge import io, spaces
from latentbridge.integrations.comfyui.common import AUTO, latent_samples, resolve_space, stated_space
from latentbridge.integrations.comfyui.node import AUTO_SPACE, Node, latent_input, node_inputs, space_input, space_sources
from latentbridge.integrations.comfyui.words import node_errors

SHOWN_CHANNELS = 16  # per-channel statistics beyond this many channels are summarised


def describe(latent: dict, space: str = AUTO, model: Any = None, vae: Any = None) -> str:
    """Lines of text about a ComfyUI LATENT: shape, space (and how it was settled), statistics, detection."""
    tensor = latent_samples(latent)
    sp, how = resolve_space(tensor, space, stated=stated_space(latent), required=False, model=model, vae=vae)
    summary = io.latent_summary(io.LatentFile(tensor, sp.id if sp else None, "raw"))
    lines = [f"LATENT {tuple(summary['shape'])} {summary['dtype']} on {tensor.device}"]
    if sp is not None:
        h, w = tensor.shape[-2:]
        lines.append(f"space: {sp.id}, {sp.title}; stands for a {h * sp.downscale}x{w * sp.downscale} px image")
        lines.append(f"how the space was chosen: {how}")
    else:
        lines.append(f"space: {how}; choose it in the node's 'space' input, or connect the MODEL or VAE the latent "
                     "is for")
    lines.append(_stats_line("raw", summary["stats"]))
    if sp is not None and summary["stats"]:
        model = spaces.convert_domain(tensor.float(), sp, "raw", "model")
        lines.append(_stats_line("model", io.latent_summary(io.LatentFile(model))["stats"]))
    if summary["nonfinite"]:
        lines.append(f"WARNING: {summary['nonfinite']} NaN or infinite values")
    lines.append(_channel_line(tensor))
    if isinstance(latent.get("noise_mask"), torch.Tensor):
        lines.append(f"noise_mask {tuple(latent['noise_mask'].shape)}")
    if latent.get("batch_index") is not None:
        lines.append(f"batch_index {list(latent['batch_index'])}")
    found = spaces.detect(tensor, {"domain": "raw"})
    lines.append(f"detection from the statistics alone: {found.summary}")
    lines += [f"  {c.confidence:6.1%}  {c.space.id:<15} {c.reason}" for c in found.candidates[:4]]
    return "\n".join(lines)


def _stats_line(domain: str, stats: dict[str, float]) -> str:
    if not stats:
        return f"{domain} domain: no finite values"
    return (f"{domain} domain: min {stats['min']:.4g}  max {stats['max']:.4g}  mean {stats['mean']:.4g}  "
            f"std {stats['std']:.4g}")


def _channel_line(tensor: torch.Tensor) -> str:
    """Mean/std of each channel (raw domain) over batch and pixels."""
    t = tensor.detach().float().transpose(0, 1).reshape(tensor.shape[1], -1)
    t = torch.where(torch.isfinite(t), t, torch.nan)
    mean, std = t.nanmean(1), (t - t.nanmean(1, keepdim=True)).pow(2).nanmean(1).sqrt()
    shown = [f"{i}: {m:.3g}/{s:.3g}" for i, (m, s) in enumerate(zip(mean.tolist(), std.tolist(), strict=True))][:SHOWN_CHANNELS]
    more = f" ... ({tensor.shape[1] - SHOWN_CHANNELS} more)" if tensor.shape[1] > SHOWN_CHANNELS else ""
    return "channels (mean/std): " + "  ".join(shown) + more


class LatentInfo(Node):
    NODE_ID = "LatentBridgeLatentInfo"
    DISPLAY_NAME = "Latent Info (latentbridge)"
    DESCRIPTION = ("Describe a LATENT as text: shape, latent space and how it was chosen (on the node, stated by a "
                   "latentbridge node, from a connected MODEL or VAE, or detected when detection is sure), the image "
                   "size it stands for, statistics in the raw and model domains, per-channel statistics and detection.")
    REQUIRED = node_inputs({
        "samples": latent_input("describe"),
        "space": space_input(f"latent space to assume. {AUTO_SPACE}"),
    })
    OPTIONAL = space_sources()
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("info",)
    OUTPUT_TOOLTIPS = ("the description, e.g. for a Preview Any node",)
    FUNCTION = "info"
    OUTPUT_NODE = True

    @node_errors()
    def info(self, samples: dict, space: str = AUTO, model: Any = None, vae: Any = None) -> dict[str, Any]:
        text = describe(samples, space, model, vae)
        return {"ui": {"text": [text]}, "result": (text,)}


NODES = (LatentInfo,)
