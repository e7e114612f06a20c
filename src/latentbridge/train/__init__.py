"""Training: latent datasets from images, a generic trainer, and recipes for interposers, upscalers, previewers."""

from .config import OptimOptions, RunConfig, TrainOptions, load_config
from .dataset import DatasetInfo, LatentDataset, build_dataset
from .encoders import Encoder, load_encoder
from .recipe import Recipe, get_recipe, register
from .trainer import Trainer, read_metrics

__all__ = [
    "DatasetInfo",
    "Encoder",
    "LatentDataset",
    "OptimOptions",
    "Recipe",
    "RunConfig",
    "TrainOptions",
    "Trainer",
    "build_dataset",
    "get_recipe",
    "load_config",
    "load_encoder",
    "read_metrics",
    "register",
]
