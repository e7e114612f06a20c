"""How a node of the pack is declared: the :class:`Node` base class, its input tables, and the inputs that several
nodes share (the LATENT, the latent's space and the MODEL and VAE it can be taken from)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from latentbridge import spaces
from latentbridge.integrations.comfyui.common import AUTO

CATEGORY = "latent/latentbridge"  # where ComfyUI lists its own latent tools
AUTO_SPACE = ("auto: the space a latentbridge node stated, else the connected MODEL's latent format, else the VAE's, "
              "else detection when it is sure")

Spec = tuple[Any, dict[str, Any]]
"""One input: (a ComfyUI type name, a list of choices or a function that returns them; its options)."""


def node_inputs(entries: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """An input table of a :class:`Node`: input name -> :data:`Spec` in the order the node shows them, read-only
    because every call of ``INPUT_TYPES`` shares it."""
    return MappingProxyType(dict(entries or {}))


def computed(kind: Any) -> Any:
    """An input's type as ComfyUI reads it now: a function's choices computed by calling it, a list copied."""
    if callable(kind):
        return kind()
    return list(kind) if isinstance(kind, list) else kind


class Node:
    """The one way the pack declares a ComfyUI node: the attributes ComfyUI reads, with the inputs as tables.

    ``REQUIRED`` and ``OPTIONAL`` (made with :func:`node_inputs`) map each input's name, which saved workflows store,
    to its :data:`Spec`; ``HIDDEN`` maps hidden inputs to what ComfyUI fills them with. Choices given as a function
    (files in a model folder, the registered spaces) are computed each time ComfyUI calls ``INPUT_TYPES``, so new files
    and spaces appear on refresh, never frozen at import.
    """

    NODE_ID: ClassVar[str]  # the id ComfyUI stores in workflows: never rename or reuse one
    DISPLAY_NAME: ClassVar[str]
    DESCRIPTION: ClassVar[str]
    CATEGORY: ClassVar[str] = CATEGORY
    REQUIRED: ClassVar[Mapping[str, Spec]] = node_inputs()
    OPTIONAL: ClassVar[Mapping[str, Spec]] = node_inputs()
    HIDDEN: ClassVar[Mapping[str, str]] = node_inputs()

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, Any]]:
        """ComfyUI's declaration of the node's inputs, built anew from its tables with every choice computed now."""
        declared = {"required": cls.REQUIRED, "optional": cls.OPTIONAL}
        types: dict[str, dict[str, Any]] = {
            section: {name: (computed(kind), dict(options)) for name, (kind, options) in table.items()}
            for section, table in declared.items() if table or section == "required"}
        if cls.HIDDEN:
            types["hidden"] = dict(cls.HIDDEN)
        return types


def latent_input(verb: str, *, what: str = "the latent", note: str | None = "it is not changed") -> Spec:
    """A LATENT input whose tooltip says what the node does with it: ``latent_input("convert")`` is "the latent to
    convert (it is not changed)"."""
    return "LATENT", {"tooltip": f"{what} to {verb}" + (f" ({note})" if note else "")}


def space_ids() -> list[str]:
    """Every registered space id, in registry order."""
    return [s.id for s in spaces.all()]


def space_choices() -> list[str]:
    """The values of a node's ``space`` input: ``auto`` then every registered space id."""
    return [AUTO, *space_ids()]


def space_input(tooltip: str) -> Spec:
    """A ``space`` COMBO input defaulting to ``auto``; its choices are computed when ComfyUI asks."""
    return space_choices, {"default": AUTO, "tooltip": tooltip}


def space_sources(space_input_name: str = "space", model_input: str = "model") -> Mapping[str, Spec]:
    """The optional MODEL and VAE inputs from which ``space_input_name`` = auto takes the latent's space."""
    return node_inputs({model_input: ("MODEL", {"tooltip": f"the MODEL the latent is for: with {space_input_name} auto, "
                                                           "its latent format says the space"}),
                        "vae": ("VAE", {"tooltip": f"the VAE the latent is for: with {space_input_name} auto, its "
                                                   "latent channels and downscale narrow the space down"})})
