"""The recipe interface: what a trainable model needs from the generic trainer, and the registry of recipes."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import InputError
from .dataset import DatasetInfo, LatentDataset

_RECIPES: dict[str, type[Recipe]] = {}
BUILTIN = ("previewer", "upscaler", "interposer", "factors")  # modules under latentbridge.train.recipes


class Recipe(ABC):
    """A model family to train on a latent dataset.

    The trainer builds the recipe from its ``Options`` (the config's ``[recipe]`` table) and the dataset, loads the
    tensors named by :attr:`keys`, and calls :meth:`loss` with the (possibly DDP-wrapped) networks of :meth:`build`.
    Evaluation, samples and export get the plain networks. Frozen helpers (e.g. a decoder for an image loss) are
    the recipe's own attributes and are never saved in checkpoints. ``Options`` may list fields in ``positive`` (above
    0) and ``signed`` (may be negative); every other number must be at least 0 (see :mod:`.config`).
    """

    name: ClassVar[str]
    Options: ClassVar[type]
    log_names: ClassVar[tuple[str, ...]] = ()  # extra per-step values loss() returns
    eval_names: ClassVar[tuple[str, ...]] = ()  # held-out metrics evaluate() returns
    closed_form: ClassVar[bool] = False  # fitted by fit() instead of gradient steps

    def __init__(self, options: Any, info: DatasetInfo, device: torch.device):
        self.options = options
        self.info = info
        self.device = device

    @property
    @abstractmethod
    def keys(self) -> list[str]:
        """Dataset tensors a batch needs."""

    @abstractmethod
    def build(self) -> dict[str, nn.Module]:
        """The trainable networks, freshly initialised (seeded by the trainer)."""

    def loss(self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of one batch and named values to log."""
        raise NotImplementedError

    def fit(self, nets: dict[str, nn.Module], data: LatentDataset) -> None:
        """Closed-form recipes: set ``nets`` from the whole training split."""
        raise NotImplementedError

    @abstractmethod
    def evaluate(self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Held-out metrics of one batch (averaged by the trainer, weighted by batch size)."""

    @abstractmethod
    def samples(self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A picture (B, 3, H, W) in [0, 1] to look at during training, e.g. target | prediction rows."""

    @abstractmethod
    def export(self, nets: dict[str, nn.Module], out: Path, card: dict[str, Any]) -> list[Path]:
        """Write the trained model file(s) with their model card into ``out``; ``card`` holds run facts."""


def grows(config: Any, other: Any) -> bool:
    """Whether ``config`` only adds residual blocks to ``other`` (the block counts its class lists in ``GROWABLE``).

    Added blocks start as the identity at the end of their group, so a net of ``config`` holding the weights of a net
    of ``other`` computes what that one did: a fine-tune can grow a trained file.
    """
    counts = getattr(type(config), "GROWABLE", ())
    if type(config) is not type(other) or not counts:
        return False
    added = [getattr(config, f) - getattr(other, f) for f in counts]
    return min(added) >= 0 and max(added) > 0 and replace(config, **{f: getattr(other, f) for f in counts}) == other


def start_from(net: nn.Module, path: str, start: nn.Module, what: str = "") -> None:
    """Load the trained network ``start`` (read from ``path``, the config's ``recipe.init``) into ``net``; a file of
    another architecture is refused with the fix. A config that only adds blocks to the file's network (:func:`grows`)
    loads it too, the added blocks left as built."""
    same = getattr(start, "config", None) == net.config
    if not (same or grows(net.config, start.config)):
        raise InputError(f"recipe.init {path}: its architecture {asdict(start.config)} differs from this config's "
                         f"{what}{asdict(net.config)}; make the [recipe] sizes match it (or only add blocks)")
    net.load_state_dict(start.state_dict(), strict=same)


def register(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: make a recipe available by its ``name``."""
    _RECIPES[cls.name] = cls
    return cls


def get_recipe(name: str) -> type[Recipe]:
    if name not in _RECIPES and name in BUILTIN:
        importlib.import_module(f"{__package__}.recipes.{name}")
    if name not in _RECIPES:
        known = sorted(set(_RECIPES) | set(BUILTIN))
        raise InputError(f"unknown recipe {name!r}; known recipes: {', '.join(known)}")
    return _RECIPES[name]
