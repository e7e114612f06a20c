"""Adapters for host applications (ComfyUI, diffusers): they import the core, never the reverse."""
