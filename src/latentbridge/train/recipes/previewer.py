"""Recipe ``previewer``: the latent-resolution neural previewer of one space, trained against the photo averaged
over each latent cell (or a tiny decoder's output averaged the same way, which is worth its cost on a GPU)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ... import spaces
from ...errors import InputError
from ...metrics import psnr
from ...preview import Factors, fit_factors
from ...preview.neural import Previewer, PreviewerConfig, file_name, metadata
from ..cards import card_text, save_model
from ..dataset import LatentDataset
from ..recipe import Recipe, register


@dataclass
class Options:
    # above 0, checked when the config is read
    positive: ClassVar[tuple[str, ...]] = ("width", "kernel", "scale")
    choices: ClassVar[dict[str, tuple[str, ...]]] = {"target": ("image", "decoder")}

    space: str = "flux2"  # latent space to preview (the dataset needs an encoder for it)
    target: str = "image"  # image: the photo averaged per latent cell | decoder: a tiny decoder's output, averaged
    decoder: str = ""  # tiny decoder for target = "decoder" (default: the space's, e.g. taef2_decoder)
    width: int = 32  # hidden channels of the convolutional body
    blocks: int = 2  # kernel x kernel convolutions in the body
    kernel: int = 3  # their size; receptive field = 1 + blocks * (kernel - 1) latent pixels
    scale: int = 1  # output pixels per latent pixel along each side
    patch: int = 0  # latent pixels per cell packed before the net; 0 = the space's own packing (2 for FLUX.2)
    context: int = 1  # GroupNorm branches that let each pixel see whole-image statistics (0 = none)
    crop: int = 0  # train on random latent crops of this side (0 = whole latents; crops change those statistics)
    ridge: float = 1e-5  # ridge of the closed-form affine fit that initialises the skip path


@register
class PreviewerRecipe(Recipe):
    name = "previewer"
    Options = Options
    eval_names = ("psnr", "psnr_affine")

    def __init__(self, options: Options, info, device):
        super().__init__(options, info, device)
        self.space = spaces.get(options.space)
        self.latent_key = info.key_for(self.space.id)
        self.domain = info.encoder_info(self.latent_key)["domain"]
        self.image_key = f"image@{info.size}"
        self.down = self.space.taesd_downscale // options.scale
        if self.down < 1 or self.space.taesd_downscale % options.scale:
            raise InputError(f"recipe.scale = {options.scale} does not divide {self.space.id}'s downscale "
                             f"{self.space.taesd_downscale}")
        if options.crop % self.patch:
            raise InputError(f"recipe.crop = {options.crop} must be a multiple of the packing cell ({self.patch})")
        self.decoder = None
        if options.target == "decoder":
            from ... import tiny

            name = options.decoder or f"{self.space.tiny}_decoder"
            self.decoder = tiny.load(name, device=device).requires_grad_(False)
        self.affine: Factors | None = None

    @property
    def keys(self) -> list[str]:
        return [self.latent_key, self.image_key]

    @property
    def patch(self) -> int:
        return self.options.patch or (self.space.packing.patch if self.space.packing else 1)

    def config(self) -> PreviewerConfig:
        o = self.options
        return PreviewerConfig(self.space.taesd_channels, o.width, o.blocks, o.kernel, o.scale, self.patch, o.context)

    def build(self) -> dict[str, nn.Module]:
        net = Previewer(self.config())
        f = self._affine()
        net.init_affine(f.weight, f.bias)
        return {"previewer": net}

    def _affine(self) -> Factors:
        """Closed-form affine factors on the training split: the start of the skip path and the baseline to beat."""
        if self.affine is None:
            data = LatentDataset(self.info, split="train", keys=self.keys)
            step = 64
            pairs = (self._latent_image(data.batch(torch.arange(i, min(len(data), i + step))))
                     for i in range(0, len(data), step))
            f = fit_factors(pairs, forms=("affine",), ridge=self.options.ridge, space=self.space.id,
                            patch=self.patch)["affine"]
            self.affine = f
        return self.affine

    def _latent_image(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        latent = spaces.convert_domain(batch[self.latent_key], self.space, self.domain, "taesd")
        return latent, batch[self.image_key]

    def _target(self, latent: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if self.decoder is not None:
            with torch.no_grad():
                image = self.decoder.decode(latent).float().clamp(0, 1)
        h, w = latent.shape[-2:]
        return F.adaptive_avg_pool2d(image, (h * self.options.scale, w * self.options.scale))

    def _crop(self, latent: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A random crop of ``crop`` latent pixels, aligned to the packing cell (a FLUX.2 cell's phase matters)."""
        c, p = self.options.crop, self.patch
        h, w = latent.shape[-2:]
        if not c or (c >= h and c >= w):
            return latent, image
        top = int(torch.randint(0, (h - min(c, h)) // p + 1, ())) * p
        left = int(torch.randint(0, (w - min(c, w)) // p + 1, ())) * p
        d = self.space.taesd_downscale
        return (latent[..., top:top + c, left:left + c],
                image[..., top * d:(top + c) * d, left * d:(left + c) * d])

    def loss(self, nets, batch):
        latent, image = self._crop(*self._latent_image(batch))
        pred = nets["previewer"](latent)
        return F.mse_loss(pred, self._target(latent, image)), {}

    def evaluate(self, nets, batch):
        latent, image = self._latent_image(batch)
        target = F.adaptive_avg_pool2d(image, latent.shape[-2:] if self.options.scale == 1 else
                                       tuple(s * self.options.scale for s in latent.shape[-2:]))
        affine = F.interpolate(self._affine().preview(latent), size=target.shape[-2:], mode="nearest")
        return {"psnr": float(psnr(nets["previewer"](latent).clamp(0, 1), target).mean()),
                "psnr_affine": float(psnr(affine.clamp(0, 1), target).mean())}

    def samples(self, nets, batch):
        latent, image = self._latent_image(batch)
        pred = nets["previewer"](latent).clamp(0, 1)
        size = image.shape[-2:]
        up = lambda x: F.interpolate(x, size=size, mode="nearest")  # noqa: E731 - local shorthand
        target = self._target(latent, image)
        return torch.cat([image, up(target), up(pred)], 3)

    def export(self, nets, out: Path, card: dict[str, Any]) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        net = nets["previewer"]
        cfg = self.config()
        facts = {k: v for k, v in card.items() if k not in ("config", "metrics")}
        facts["architecture"] = f"{asdict(cfg)}, {net.parameter_count()} parameters"
        facts["target"] = self.options.target
        notes = (f"Neural previewer for **{self.space.id}**: a taesd-domain latent "
                 f"({self.space.taesd_channels} channels at /{self.space.taesd_downscale}) to RGB in [0, 1] at "
                 f"{'the latent resolution' if cfg.scale == 1 else f'{cfg.scale}x the latent resolution'}. "
                 "Held-out metrics: PSNR against the photo averaged over each output pixel's cell, "
                 f"{card.get('metrics_on', 'held-out images')}. Load it with `latentbridge.preview.preview(latent, "
                 f"'{self.space.id}', method='neural'{'' if cfg.scale == 1 else ', size=...'})`: the rung of the "
                 "space's preview ladder nearest the size asked for runs (docs/previews.md).")
        text = card_text(f"latentbridge previewer for {self.space.title}", facts, card["metrics"], notes)
        meta = metadata(cfg, self.space.id, {"latentbridge.card": json.dumps(card, default=str)})
        return save_model(out / file_name(self.space, cfg.scale), {k: v.float() for k, v in net.state_dict().items()},
                          meta, text, dtype=card.get("storage", "float32"))
