"""latentbridge's ComfyUI node pack (category "latent/latentbridge") and its live previews.

Load it either way:
* ``pip install latentbridge`` into ComfyUI's Python, then put a two-line file in ``ComfyUI/custom_nodes/``
  (``examples/comfyui/latentbridge_nodes.py``) that imports the mappings and calls :func:`setup`;
* or link this folder into ``custom_nodes/`` with the project's ``src`` on ComfyUI's PYTHONPATH: every import in the
  pack is absolute, so the folder also loads as a top-level module, and as ComfyUI's entry point it calls
  :func:`setup` itself.
(A clone of the repository in ``custom_nodes/`` loads through the repository's own ``__init__.py``, which calls
:func:`setup` as well.)

Importing this package changes nothing in ComfyUI; :func:`setup` does. The nodes import latentbridge's core; the core
never imports ComfyUI.
"""

from pathlib import Path

from latentbridge.integrations.comfyui import live_preview, models
from latentbridge.integrations.comfyui.registry import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = str(Path(__file__).resolve().parent / "web")  # the frontend's live-preview setting


def setup() -> None:
    """What loading the pack into ComfyUI does: register the model folders, wrap ComfyUI's live previewer and add the
    route of its frontend setting.

    Idempotent; does nothing outside ComfyUI. ``LATENTBRIDGE_COMFY_PREVIEW=0`` leaves the live previews alone.
    """
    models.register_model_folders()
    if live_preview.install():
        live_preview.add_route()


__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY", "setup"]

if __name__ != "latentbridge.integrations.comfyui":  # ComfyUI loaded this folder itself: it is the entry point
    setup()
