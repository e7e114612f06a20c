"""Files at the edge: latents (ComfyUI, safetensors, npy, pt), images, grids, animations and plots."""

from .atomic import atomic_path, check_writable
from .images import (
    IMAGE_EXTENSIONS,
    list_images,
    load_image,
    make_grid,
    pil_to_tensor,
    save_animation,
    save_image,
    save_pil,
    tensor_to_pil,
)
from .latents import MAX_FILE_BYTES, LatentFile, latent_summary, load_latent, save_latent
from .plot import line_plot

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_FILE_BYTES",
    "LatentFile",
    "atomic_path",
    "check_writable",
    "latent_summary",
    "line_plot",
    "list_images",
    "load_image",
    "load_latent",
    "make_grid",
    "pil_to_tensor",
    "save_animation",
    "save_image",
    "save_latent",
    "save_pil",
    "tensor_to_pil",
]
