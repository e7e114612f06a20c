"""How a node is declared: input tables turned into ComfyUI's INPUT_TYPES, with choices computed when ComfyUI asks."""

from __future__ import annotations

import pytest

from latentbridge import spaces
from latentbridge.integrations.comfyui import NODE_CLASS_MAPPINGS
from latentbridge.integrations.comfyui.common import AUTO
from latentbridge.integrations.comfyui.node import (
    CATEGORY,
    Node,
    latent_input,
    node_inputs,
    space_choices,
    space_input,
    space_sources,
)


class Probe(Node):
    NODE_ID, DISPLAY_NAME, DESCRIPTION = "LatentBridgeProbe", "Probe (latentbridge)", "a node for these tests"
    files = ("a.safetensors",)
    REQUIRED = node_inputs({
        "samples": latent_input("probe"),
        "file": (lambda: list(Probe.files), {"tooltip": "a file"}),
        "mode": (["x", "y"], {"default": "x", "tooltip": "a mode"}),
        "space": space_input("a space"),
    })


def test_space_choices_offer_auto_and_every_registered_space():
    assert space_choices() == [AUTO, *(s.id for s in spaces.all())]


def test_input_types_keeps_the_table_order_and_leaves_out_empty_sections():
    types = Probe.INPUT_TYPES()
    assert list(types) == ["required"] and list(types["required"]) == ["samples", "file", "mode", "space"]
    assert types["required"]["samples"] == ("LATENT", {"tooltip": "the latent to probe (it is not changed)"})
    assert types["required"]["space"] == (space_choices(), {"default": AUTO, "tooltip": "a space"})
    assert Probe.CATEGORY == CATEGORY


def test_input_types_computes_choices_each_time_it_is_called(monkeypatch):
    assert Probe.INPUT_TYPES()["required"]["file"][0] == ["a.safetensors"]
    monkeypatch.setattr(Probe, "files", ("a.safetensors", "b.safetensors"))
    assert Probe.INPUT_TYPES()["required"]["file"][0] == ["a.safetensors", "b.safetensors"]


def test_input_types_hands_out_new_dicts_so_a_caller_cannot_change_the_node():
    types = Probe.INPUT_TYPES()
    types["required"]["mode"][0].append("z")
    types["required"]["mode"][1]["default"] = "y"
    types["required"].pop("samples")
    again = Probe.INPUT_TYPES()["required"]
    assert again["mode"] == (["x", "y"], {"default": "x", "tooltip": "a mode"}) and "samples" in again


def test_tables_are_read_only():
    with pytest.raises(TypeError):
        Probe.REQUIRED["extra"] = ("INT", {"tooltip": "no"})


def test_input_types_adds_optional_and_hidden_sections_when_declared():
    class WithMore(Probe):
        OPTIONAL = space_sources("space")
        HIDDEN = node_inputs({"prompt": "PROMPT"})

    types = WithMore.INPUT_TYPES()
    assert list(types) == ["required", "optional", "hidden"]
    assert list(types["optional"]) == ["model", "vae"] and types["hidden"] == {"prompt": "PROMPT"}


def test_latent_input_says_what_the_node_does_with_the_latent():
    assert latent_input("save", note=None) == ("LATENT", {"tooltip": "the latent to save"})
    assert latent_input("noise", what="the clean latent")[1]["tooltip"] == "the clean latent to noise (it is not changed)"


@pytest.fixture
def new_space():
    sp = spaces.register(spaces.LatentSpace(id="nodeprobe5", title="Node probe", channels=5, downscale=8,
                                            mixing=spaces.MixingPreset(steps=12, alpha_1=2.0)))
    yield sp
    spaces.unregister(sp)


@pytest.mark.parametrize("node_id", sorted(NODE_CLASS_MAPPINGS))
def test_every_node_offers_a_space_registered_after_import(node_id, new_space, comfy):
    """Space lists (and the mixing presets, which are registry data) are computed when ComfyUI asks, not at import."""
    cls = NODE_CLASS_MAPPINGS[node_id]
    assert issubclass(cls, Node)
    for section in cls.INPUT_TYPES().values():
        for name, spec in section.items():
            if isinstance(spec, tuple) and isinstance(spec[0], list) and "sd1" in spec[0]:
                assert new_space.id in spec[0], f"{node_id}.{name} lists the spaces of import time"
