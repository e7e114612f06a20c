"""ComfyUI entry point for a clone of this repository in ``ComfyUI/custom_nodes/``: the pack lives in ``src/``.

Only inside ComfyUI (which has imported its ``folder_paths`` module before it loads custom nodes) does this put
``src`` on ``sys.path``, export the pack's node mappings and call the pack's ``setup()`` (model folders, live
previews); test runners and build tools that import this file get an empty module and an unchanged ``sys.path``.
"""

import sys
from pathlib import Path

if "folder_paths" in sys.modules:
    _SRC = str(Path(__file__).resolve().parent / "src")
    if _SRC not in sys.path:
        sys.path.insert(0, _SRC)
    from latentbridge.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, WEB_DIRECTORY, setup

    setup()  # ComfyUI's model folders for latentbridge, and latentbridge's live previews
    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
