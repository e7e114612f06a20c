"""A small recipe for trainer tests: a 1x1 conv from the fake encoder's latent to the pooled image."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latentbridge import spaces
from latentbridge.train import Encoder
from latentbridge.train.cards import card_text, save_model
from latentbridge.train.recipe import Recipe, register


def fake_encoder(name: str = "fake") -> Encoder:
    """Image -> 4 channels at /8 (RGB means plus luminance), pretending to serve sd1 in the model domain."""

    def encode(images: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(images * 2 - 1, 8)
        return torch.cat([pooled, pooled.mean(1, keepdim=True)], 1)

    return Encoder(name, name, spaces.get("sd1"), "model", encode)


@dataclass
class Options:
    width: int = 8  # hidden channels
    dropout: float = 0.1  # exercises the seeded RNG on resume


@register
class ToyRecipe(Recipe):
    name = "toy"
    Options = Options
    log_names = ("l1",)
    eval_names = ("mse",)

    @property
    def keys(self) -> list[str]:
        return ["image@32", "fake@32"]

    def build(self) -> dict[str, nn.Module]:
        w = self.options.width
        return {"net": nn.Sequential(nn.Conv2d(4, w, 1), nn.ReLU(), nn.Dropout(self.options.dropout), nn.Conv2d(w, 3, 1))}

    def _pred_target(self, nets, batch):
        target = F.avg_pool2d(batch["image@32"], 8) * 2 - 1
        return nets["net"](batch["fake@32"]), target

    def loss(self, nets, batch):
        pred, target = self._pred_target(nets, batch)
        return F.mse_loss(pred, target), {"l1": float((pred - target).detach().abs().mean())}

    def evaluate(self, nets, batch):
        pred, target = self._pred_target(nets, batch)
        return {"mse": float(F.mse_loss(pred, target))}

    def samples(self, nets, batch):
        pred, target = self._pred_target(nets, batch)
        return torch.cat([target, pred], 3).add(1).div(2)

    def export(self, nets, out: Path, card: dict) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        text = card_text("toy", {k: v for k, v in card.items() if k != "config"}, card["metrics"])
        return save_model(out / "toy.safetensors", nets["net"].state_dict(), {"card": json.dumps(card)}, text)
