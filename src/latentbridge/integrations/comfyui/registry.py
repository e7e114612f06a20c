"""The pack's node table, built from one module per node group.

Each group module imports the core module it adapts and lists its node classes in ``NODES``; every class is a
:class:`~latentbridge.integrations.comfyui.node.Node` carrying ``NODE_ID`` (the id ComfyUI stores in workflows: never
rename or reuse one) and ``DISPLAY_NAME``. Adding a group is one import and one entry in ``GROUPS``.
"""

from __future__ import annotations

from types import ModuleType

from latentbridge.integrations.comfyui import fit_preview, info, interposer, latent_files, mixing, preview, tiny, upscale

GROUPS: tuple[ModuleType, ...] = (latent_files, info, interposer, preview, fit_preview, tiny, upscale, mixing)


def node_mappings(groups: tuple[ModuleType, ...] = GROUPS) -> tuple[dict[str, type], dict[str, str]]:
    """``NODE_CLASS_MAPPINGS`` and ``NODE_DISPLAY_NAME_MAPPINGS`` for ``groups``; duplicate ids are a bug."""
    classes: dict[str, type] = {}
    for group in groups:
        for cls in group.NODES:
            if cls.NODE_ID in classes:
                raise RuntimeError(f"node id {cls.NODE_ID} is defined twice ({classes[cls.NODE_ID].__name__}, "
                                   f"{cls.__name__})")
            classes[cls.NODE_ID] = cls
    return classes, {node_id: cls.DISPLAY_NAME for node_id, cls in classes.items()}


NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = node_mappings()
