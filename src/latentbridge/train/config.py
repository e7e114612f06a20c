"""Training configuration: a TOML file validated up front into typed dataclasses with commented defaults."""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass
class TrainOptions:
    steps: int = 2000  # optimiser steps, exactly
    batch_size: int = 32  # crops per step (per process)
    checkpoint_every: int = 500  # steps between atomic checkpoints (0 = only at the end)
    eval_every: int = 250  # steps between held-out evaluations
    sample_every: int = 500  # steps between sample pictures
    log_every: int = 10  # steps between metrics.csv rows
    seed: int = 0  # model init and per-step batch sampling
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 uses a gradient scaler, CUDA only)
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class OptimOptions:
    lr: float = 1e-3  # peak learning rate (AdamW)
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 0.0
    warmup_steps: int = 100  # linear warm-up from 0
    schedule: str = "cosine"  # cosine | constant (after warm-up)
    min_lr_ratio: float = 0.02  # cosine floor, as a fraction of lr
    grad_clip: float = 1.0  # max gradient norm (0 = no clipping)


@dataclass
class RunConfig:
    recipe: str
    options: typing.Any  # the recipe's own Options dataclass, from the [recipe] table
    train: TrainOptions = field(default_factory=TrainOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "recipe_options": dataclasses.asdict(self.options),
                "train": dataclasses.asdict(self.train), "optim": dataclasses.asdict(self.optim)}


_CHOICES = {("train", "precision"): ("fp32", "bf16", "fp16"), ("train", "device"): ("auto", "cpu", "cuda"),
            ("optim", "schedule"): ("cosine", "constant")}


def from_table(cls: type, table: dict, section: str) -> typing.Any:
    """Build dataclass ``cls`` from a TOML table: unknown keys and wrong types are errors that list what fits."""
    if not isinstance(table, dict):
        raise InputError(f"[{section}] must be a table")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise InputError(f"[{section}] has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(names)}")
    values = {}
    for key, value in table.items():
        values[key] = _check_type(value, hints[key], f"{section}.{key}")
        allowed = _CHOICES.get((section, key))
        if allowed and value not in allowed:
            raise InputError(f"{section}.{key} = {value!r}: use one of {', '.join(allowed)}")
    try:
        return cls(**values)
    except TypeError as e:
        raise InputError(f"[{section}]: {e}") from None


def _check_type(value: typing.Any, hint: typing.Any, where: str) -> typing.Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
            try:
                return _check_type(value, option, where)
            except InputError:
                continue
        raise InputError(f"{where} = {value!r} has the wrong type: expected {hint}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise InputError(f"{where} = {value!r}: expected a list")
        (item,) = typing.get_args(hint)[:1] or (typing.Any,)
        items = [_check_type(v, item, where) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is typing.Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise InputError(f"{where} = {value!r} has the wrong type: expected {hint.__name__}")
    return value


def load_config(path: str | Path, *, overrides: dict | None = None) -> RunConfig:
    """Read and validate a training config; ``overrides`` (e.g. steps from the CLI) replace [train] values."""
    from .recipe import get_recipe

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML ({e})") from None
    unknown = sorted(set(data) - {"recipe", "train", "optim"})
    if unknown:
        raise InputError(f"{path}: unknown section(s) {', '.join(unknown)}; a config has recipe = \"NAME\" and the "
                         "tables [recipe], [train], [optim]")
    name = data.get("recipe")
    if isinstance(name, dict):
        table = dict(name)
        name = table.pop("name", None)
    else:
        table = {}
    if not isinstance(name, str):
        raise InputError(f"{path}: say which recipe to run: [recipe] name = \"previewer\" (or upscaler, interposer, ...)")
    recipe = get_recipe(name)
    train = from_table(TrainOptions, {**data.get("train", {}), **(overrides or {})}, "train")
    if train.steps < 0 or train.batch_size < 1 or train.log_every < 1:
        raise InputError("train.steps must be >= 0, train.batch_size and train.log_every >= 1")
    return RunConfig(name, from_table(recipe.Options, table, "recipe"), train,
                     from_table(OptimOptions, data.get("optim", {}), "optim"))
