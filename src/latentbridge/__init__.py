"""latentbridge: work directly in the latent spaces of Stable Diffusion-family image models."""

__version__ = "0.1.0"
