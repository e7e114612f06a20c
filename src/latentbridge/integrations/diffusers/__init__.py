"""diffusers helpers: each lives in its own module and is re-exported here."""

from .convert import convert_latents as convert_latents
from .mixing import mixing_upscale as mixing_upscale
from .preview import LivePreview as LivePreview
from .tiny_vae import TinyFlux2VAE as TinyFlux2VAE
