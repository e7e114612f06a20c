from latentbridge.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, WEB_DIRECTORY, setup  # noqa: F401

setup()  # ComfyUI's model folders for latentbridge, and latentbridge's live previews
