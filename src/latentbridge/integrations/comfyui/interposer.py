"""Latent Interposer: a LATENT of one space to another without decoding, with the route shown as text."""

from __future__ import annotations

from typing import Any

from latentbridge import interposer, spaces
from latentbridge.integrations.comfyui.common import AUTO, compute_device, latent_samples, new_latent, resolve_space, stated_space
from latentbridge.integrations.comfyui.node import (
    AUTO_SPACE,
    Node,
    latent_input,
    node_inputs,
    space_ids,
    space_input,
    space_sources,
)
from latentbridge.integrations.comfyui.words import node_errors

INPUTS = {"space": "source", "from": "source", "to": "target", "from_space": "source", "to_space": "target"}


def convert_latent(latent: dict, source: str, target: str, model: Any = None, vae: Any = None) -> tuple[dict, str]:
    """The LATENT converted to ``target`` (other keys kept, target recorded) and a line saying how.

    ``noise_mask`` and ``batch_index`` are kept as they are: ComfyUI's samplers resize a mask to the latent they
    sample, so a mask stays valid when the latent's size per image pixel changes.
    """
    tensor = latent_samples(latent)
    src, how = resolve_space(tensor, source, stated=stated_space(latent), model=model, vae=vae, input_name="source")
    dst = spaces.get(target)
    route = interposer.plan(src, dst)
    out = interposer.convert(tensor, src, dst, domain="raw", device=compute_device())
    text = (f"source {src.id} ({how}); route {route.describe()}; LATENT {tuple(tensor.shape)} -> {tuple(out.shape)}")
    return new_latent(latent, out, dst), text


class Interposer(Node):
    NODE_ID = "LatentBridgeInterposer"
    DISPLAY_NAME = "Latent Interposer (latentbridge)"
    DESCRIPTION = ("Convert a LATENT from one latent space to another without a VAE round trip, through the interposer "
                   "models found in models/interposers (a direct model or a chain of them). The route and its expected "
                   "cost are shown; an impossible conversion is an error that lists the possible ones.")
    REQUIRED = node_inputs({
        "samples": latent_input("convert"),
        "source": space_input(f"space the latent is in. {AUTO_SPACE} (SD1 and SDXL latents need the MODEL or a "
                              "choice here)"),
        "target": (space_ids, {"default": "sdxl", "tooltip":
                   "space to convert to; same as the source returns a copy"}),
    })
    OPTIONAL = space_sources("source")
    RETURN_TYPES = ("LATENT", "STRING")
    RETURN_NAMES = ("samples", "route")
    OUTPUT_TOOLTIPS = ("the latent in the target space (raw domain, like every ComfyUI LATENT)",
                       "the source space, how it was settled, and the route taken")
    FUNCTION = "convert"

    @node_errors(INPUTS)
    def convert(self, samples: dict, source: str = AUTO, target: str = "sdxl", model: Any = None,
                vae: Any = None) -> dict[str, Any]:
        out, text = convert_latent(samples, source, target, model, vae)
        return {"ui": {"text": [text]}, "result": (out, text)}


NODES = (Interposer,)
