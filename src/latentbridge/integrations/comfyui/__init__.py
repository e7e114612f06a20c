"""latentbridge's ComfyUI node pack (category "latentbridge").

Load it either way:
* ``pip install latentbridge`` into ComfyUI's Python, then put a one-line file in ``ComfyUI/custom_nodes/``
  (``examples/comfyui/latentbridge_nodes.py``)::

      from latentbridge.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

* or link this folder into ``custom_nodes/`` with the project's ``src`` on ComfyUI's PYTHONPATH: every import in the
  pack is absolute, so the folder also loads as a top-level module.

The nodes import latentbridge's core; the core never imports ComfyUI.
"""

from latentbridge.integrations.comfyui.registry import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
