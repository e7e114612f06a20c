"""Interposers: convert latents between spaces without decoding, through v4.0-compatible or our own networks.

``convert(latent, src, dst, domain=...)`` plans a route over the models available (a direct model or a chain),
feeds each model the domain it was trained on and returns the domain it was given.
"""

from .convert import convert, run_route
from .models import (
    KIND,
    V4_PAIRS,
    ModelEntry,
    bridge_entry,
    bridge_metadata,
    discover,
    inference_net,
    load_file,
    locate,
    v4_entry,
    v4_filename,
)
from .net import BridgeConfig, BridgeNet
from .routing import Route, plan, reachable
from .v4 import FusedV4, V4Config, V4Interposer, check_state_dict, load_v4

__all__ = [
    "KIND",
    "V4_PAIRS",
    "BridgeConfig",
    "BridgeNet",
    "FusedV4",
    "ModelEntry",
    "Route",
    "V4Config",
    "V4Interposer",
    "bridge_entry",
    "bridge_metadata",
    "check_state_dict",
    "convert",
    "discover",
    "inference_net",
    "load_file",
    "load_v4",
    "locate",
    "plan",
    "reachable",
    "run_route",
    "v4_entry",
    "v4_filename",
]
