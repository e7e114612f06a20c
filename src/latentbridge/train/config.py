"""Training configuration: a TOML file validated up front into typed dataclasses with commented defaults.

Every number in a config must be finite and at least 0, except the fields an options class lists in its
``signed`` class attribute; the fields it lists in ``positive`` must be above 0 (at least 1 for whole numbers), and
those in its ``choices`` (field -> allowed values) one of their values.
"""

from __future__ import annotations

import dataclasses
import math
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
    positive: typing.ClassVar[tuple[str, ...]] = ("batch_size", "log_every")
    signed: typing.ClassVar[tuple[str, ...]] = ("seed",)

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
    positive: typing.ClassVar[tuple[str, ...]] = ("lr",)

    lr: float = 1e-3  # peak learning rate (AdamW)
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 0.0
    warmup_steps: int = 100  # linear warm-up from 0
    schedule: str = "cosine"  # cosine | constant (after warm-up)
    min_lr_ratio: float = 0.02  # cosine floor, as a fraction of lr
    grad_clip: float = 1.0  # max gradient norm (0 = no clipping)


@dataclass
class ExportOptions:
    dtype: str = "float16"  # float16 | bfloat16 | float32: the dtype the exported file keeps its weights in


@dataclass
class RunConfig:
    recipe: str
    options: typing.Any  # the recipe's own Options dataclass, from the [recipe] table
    train: TrainOptions = field(default_factory=TrainOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    export: ExportOptions = field(default_factory=ExportOptions)

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "recipe_options": dataclasses.asdict(self.options),
                "train": dataclasses.asdict(self.train), "optim": dataclasses.asdict(self.optim),
                "export": dataclasses.asdict(self.export)}


_CHOICES = {("train", "precision"): ("fp32", "bf16", "fp16"), ("train", "device"): ("auto", "cpu", "cuda"),
            ("optim", "schedule"): ("cosine", "constant"), ("export", "dtype"): ("float16", "bfloat16", "float32")}


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
        allowed = _CHOICES.get((section, key)) or getattr(cls, "choices", {}).get(key)
        if allowed and value not in allowed:
            raise InputError(f"{section}.{key} = {value!r}: use one of {', '.join(allowed)}")
    for key, value in values.items():
        _check_range(value, key in getattr(cls, "positive", ()), key in getattr(cls, "signed", ()),
                     f"{section}.{key}")
    try:
        return cls(**values)
    except TypeError as e:
        raise InputError(f"[{section}]: {e}") from None


def _numbers(value: typing.Any) -> list:
    """Every number in a value, lists flattened (TOML booleans are not numbers)."""
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def _check_range(value: typing.Any, positive: bool, signed: bool, where: str) -> None:
    """Numbers (also inside lists) must be finite, at least 0 unless ``signed``, above 0 where ``positive``."""
    for n in _numbers(value):
        said = f"{where} = {value!r}" if n is value else f"{where} holds {n!r}"
        if not math.isfinite(n):
            raise InputError(f"{said}: give a finite number")
        if positive and n <= 0:
            raise InputError(f"{said}: it must be {'at least 1' if isinstance(n, int) else 'above 0'}")
        if not signed and n < 0:
            raise InputError(f"{said}: it must be at least 0")


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
    """Read and validate a training config; ``overrides`` (e.g. steps from the CLI) replace [train] values.

    Any problem is one :class:`InputError` that starts with the file and names the key.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: a folder, not a config file; give the TOML file (see configs/)") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file; a config is TOML (see configs/)") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML ({e})") from None
    try:
        return _from_data(data, overrides or {})
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def _from_data(data: dict, overrides: dict) -> RunConfig:
    from .recipe import get_recipe

    unknown = sorted(set(data) - {"recipe", "train", "optim", "export"})
    if unknown:
        raise InputError(f"unknown section(s) {', '.join(unknown)}; a config has recipe = \"NAME\" and the "
                         "tables [recipe], [train], [optim], [export]")
    name = data.get("recipe")
    if isinstance(name, dict):
        table = dict(name)
        name = table.pop("name", None)
    else:
        table = {}
    if not isinstance(name, str):
        raise InputError("say which recipe to run: [recipe] name = \"previewer\" (or upscaler, interposer, ...)")
    recipe = get_recipe(name)
    train_table = data.get("train", {})
    train = from_table(TrainOptions, {**train_table, **overrides} if isinstance(train_table, dict) else train_table,
                       "train")
    if train.steps < 1 and not recipe.closed_form:
        raise InputError(f"train.steps = {train.steps}: a {name} run needs at least 1 step")
    optim = from_table(OptimOptions, data.get("optim", {}), "optim")
    for key in ("beta1", "beta2"):
        if getattr(optim, key) >= 1:
            raise InputError(f"optim.{key} = {getattr(optim, key)!r}: it must be below 1 (0.9 and 0.99 are usual)")
    if optim.min_lr_ratio > 1:
        raise InputError(f"optim.min_lr_ratio = {optim.min_lr_ratio!r}: it is a fraction of lr, at most 1")
    return RunConfig(name, from_table(recipe.Options, table, "recipe"), train, optim,
                     from_table(ExportOptions, data.get("export", {}), "export"))
