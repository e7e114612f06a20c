"""Recipe ``factors``: linear, affine and quadratic preview factors of one space in closed form (no gradient steps)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ... import spaces
from ...errors import InputError
from ...preview import FORMS, Factors, best_form, builtin, fit_factors, save_factors, score_factors
from ..dataset import LatentDataset
from ..recipe import Recipe, register


@dataclass
class Options:
    space: str = "flux2"  # latent space to fit (the dataset needs an encoder for it)
    forms: list[str] = field(default_factory=lambda: list(FORMS))  # which forms to fit
    ridge: float = 1e-5  # ridge strength, times the mean feature energy
    patch: int = 0  # cell side of packed factors; 0 = the space's own packing (2 for FLUX.2), 1 = per pixel


class FactorSet(nn.Module):
    """Fitted factors held as buffers, so the trainer can move, evaluate and export them like a network."""

    def __init__(self, channels: int, forms: list[str], patch: int):
        super().__init__()
        from ...preview import feature_count

        self.forms = forms
        for form in forms:
            p = 1 if form == "quadratic" else patch  # as fit_factors: quadratic factors are per pixel
            self.register_buffer(f"{form}_weight", torch.zeros(feature_count(channels * p * p, form), 3 * p * p))
            self.register_buffer(f"{form}_bias", torch.zeros(3 * p * p))

    def factors(self, form: str) -> Factors:
        bias = getattr(self, f"{form}_bias") if form != "linear" else None
        return Factors(getattr(self, f"{form}_weight"), bias, form)


@register
class FactorsRecipe(Recipe):
    name = "factors"
    Options = Options
    closed_form = True
    eval_names = ("psnr_linear", "psnr_affine", "psnr_quadratic", "psnr_builtin")

    def __init__(self, options: Options, info, device):
        super().__init__(options, info, device)
        unknown = [f for f in options.forms if f not in FORMS]
        if unknown or not options.forms:
            raise InputError(f"recipe.forms = {options.forms}: choose among {', '.join(FORMS)}")
        self.space = spaces.get(options.space)
        self.latent_key = info.key_for(self.space.id)
        self.domain = info.encoder_info(self.latent_key)["domain"]
        self.image_key = f"image@{info.size}"

    @property
    def keys(self) -> list[str]:
        return [self.latent_key, self.image_key]

    def build(self) -> dict[str, nn.Module]:
        return {"factors": FactorSet(self.space.taesd_channels, list(self.options.forms), self.patch)}

    @property
    def patch(self) -> int:
        return self.options.patch or (self.space.packing.patch if self.space.packing else 1)

    def _pair(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return spaces.convert_domain(batch[self.latent_key], self.space, self.domain, "taesd"), batch[self.image_key]

    def fit(self, nets, data: LatentDataset) -> None:
        step = 64
        pairs = (self._pair(data.batch(torch.arange(i, min(len(data), i + step)))) for i in range(0, len(data), step))
        fitted = fit_factors(pairs, forms=self.options.forms, ridge=self.options.ridge, space=self.space.id,
                             patch=self.patch)
        with torch.no_grad():
            for form, f in fitted.items():
                getattr(nets["factors"], f"{form}_weight").copy_(f.weight)
                if f.bias is not None:
                    getattr(nets["factors"], f"{form}_bias").copy_(f.bias)

    def evaluate(self, nets, batch):
        latent, image = self._pair(batch)
        candidates = {form: nets["factors"].factors(form) for form in self.options.forms}
        if self.space.rgb_factors is not None:
            candidates["builtin"] = builtin(self.space)
        return {f"psnr_{name}": float(s.mean()) for name, s in score_factors(candidates, [(latent, image)]).items()}

    def samples(self, nets, batch):
        latent, image = self._pair(batch)
        size = image.shape[-2:]
        rows = [image] + [torch.nn.functional.interpolate(nets["factors"].factors(f).rgb(latent).clamp(-1, 1).add(1).div(2),
                                                          size=size, mode="nearest") for f in self.options.forms]
        return torch.cat(rows, 3)

    def export(self, nets, out: Path, card: dict[str, Any]) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        metrics = card["metrics"]
        fitted = {form: nets["factors"].factors(form) for form in self.options.forms}
        default = best_form({k.removeprefix("psnr_"): v for k, v in metrics.items()}, self.options.forms)
        path = out / f"factors-{self.space.id}.safetensors"
        info = {k: v for k, v in card.items() if k != "config"}
        storage = card.get("storage", "float32")
        save_factors(path, fitted, space=self.space.id, default=default, info=json.loads(json.dumps(info, default=str)),
                     overwrite=True, dtype=storage)
        lines = [f"# Preview factors for {self.space.title}", "",
                 f"Closed-form ridge least squares (ridge {self.options.ridge:g}) from taesd-domain latents to the "
                 "photo averaged over each latent cell, RGB in [-1, 1]. Default form: "
                 f"**{default}** (best held-out PSNR).", "", "| factors | held-out PSNR (dB) |", "|---|---:|"]
        lines += [f"| {k.removeprefix('psnr_')} | {v:.2f} |" for k, v in metrics.items()]
        lines += ["", f"Data: {json.dumps(card.get('data', {}), default=str)}", "",
                  f"Storage: {storage}" + (f" (the PSNR above is of the stored factors; before rounding: "
                                           f"{card['metrics_before_rounding_to_storage']})"
                                           if "metrics_before_rounding_to_storage" in card else ""), ""]
        card_path = path.with_suffix(".md")
        from ...io import atomic_path

        with atomic_path(card_path, overwrite=True) as tmp:
            tmp.write_text("\n".join(lines))
        return [path, card_path]
