"""Files at the edge: latents (ComfyUI, safetensors, npy, pt), images, grids, animations, videos and plots."""

from .atomic import atomic_path, atomic_paths, check_readable, check_writable, remove_partials
from .images import (
    IMAGE_EXTENSIONS,
    image_size,
    list_images,
    load_image,
    make_grid,
    open_image,
    pil_to_tensor,
    save_animation,
    save_image,
    save_images,
    save_pil,
    tensor_to_pil,
)
from .latents import MAX_FILE_BYTES, LatentFile, latent_summary, load_latent, save_latent
from .plot import line_plot
from .video import VIDEO_EXTENSIONS, Video, is_video_path, load_video, parse_fps, save_video

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_FILE_BYTES",
    "VIDEO_EXTENSIONS",
    "LatentFile",
    "Video",
    "atomic_path",
    "atomic_paths",
    "check_readable",
    "check_writable",
    "image_size",
    "is_video_path",
    "latent_summary",
    "line_plot",
    "list_images",
    "load_image",
    "load_latent",
    "load_video",
    "make_grid",
    "open_image",
    "parse_fps",
    "pil_to_tensor",
    "remove_partials",
    "save_animation",
    "save_image",
    "save_images",
    "save_latent",
    "save_pil",
    "save_video",
    "tensor_to_pil",
]
