"""Recipe ``upscaler``: the learned latent upscaler of one space, conditioned on the ratio.

Every crop in the dataset is encoded by the space's real tiny encoder at several sizes (``build_dataset(...,
size=256, extra_sizes=[64, 96, ...])``), so each pair of sizes is a training pair: the latent of the photo at the
low size in, a latent at the high size out. Two targets are offered and may be mixed:

* ``roundtrip``: the decode-resize-encode round trip of the low latent through the real tiny autoencoder, computed
  once and cached beside the dataset. It is a fixed function of the low latent, so a network can learn it almost
  exactly (distillation), and its latents decode cleanly.
* ``encode``: the photo encoded at the high size. It holds detail the low latent does not, so a network trained on
  it alone regresses to the mean and its blurry latents decode 3 dB worse; a small weight adds a little detail.
* ``image``: the real tiny decoder's picture of the prediction against the photo at the high size, on a random
  window per step (:mod:`..image_loss`). The mean squared error of pictures is what the benchmark's PSNR scores,
  so this is the teacher that can beat the round trip; the latent terms keep the latents close to ones that decode
  cleanly. ``init`` starts from a trained upscaler file of the same architecture, or of one with fewer residual
  blocks (``blocks``, ``head_blocks``: the added ones start as the identity), to fine-tune it.

Each step draws its own (pair, items) from the cached targets with the trainer's per-step seed, so a resumed run
draws exactly what the uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from ... import metrics, spaces, weights
from ...errors import InputError
from ...io import atomic_path
from ...upscale.learned import UpscalerConfig, UpscalerNet, load, to_tensors, weight_name
from ..cards import card_text, save_model
from ..dataset import LatentDataset
from ..image_loss import window_mse
from ..recipe import Recipe, register, start_from

EVAL_RATIOS = (2.0, 1.5)  # the benchmark's ratios, reported as held-out PSNR through the real decoder
SENSITIVITY = "channel_sensitivity"  # cache entry: the decoder's per-channel sensitivity


@dataclass
class Options:
    # above 0, checked when the config is read
    positive: ClassVar[tuple[str, ...]] = ("scale_ranges", "pairs_per_item", "width", "sub", "sub_channels", "head",
                                           "image_window", "image_batch")
    choices: ClassVar[dict[str, tuple[str, ...]]] = {"resize": ("bilinear", "bicubic")}

    space: str = "flux2"  # latent space (the dataset needs its tiny encoder, e.g. taef2)
    autoencoder: str = ""  # tiny autoencoder for the round trip and the PSNR (default: the space's, e.g. taef2)
    roundtrip_weight: float = 1.0  # MSE weight toward the decode-resize-encode round trip of the low latent
    encode_weight: float = 0.0  # MSE weight toward the photo encoded at the high size
    image_weight: float = 0.0  # MSE weight of the decoded prediction against the photo at the high size
    image_window: int = 14  # latent pixels per side of the window decoded for the image loss
    image_margin: int = 3  # latent pixels at the window's edge left out of the image loss
    image_batch: int = 4  # items of each batch that get the image loss (decoding is the expensive part)
    init: str = ""  # an upscaler file to start from (same architecture, or fewer blocks), instead of a fresh network
    resize: str = "bilinear"  # image resampling inside the round trip (antialiased): bilinear | bicubic
    channel_weights: str = "decoder"  # decoder: weight each channel's error by how much the decoder's image moves
    channel_floor: float = 0.1  # with decoder weights: added to the mean-1 weights so no channel is ignored
    scale_ranges: list[list[float]] = field(default_factory=lambda: [[0.5, 0.5], [1.0, 4.0]])  # trained ratios
    pairs_per_item: int = 4  # size pairs per training crop whose round trip is computed (the cached work)
    width: int = 64  # trunk channels at the input resolution
    blocks: int = 4  # residual blocks in the trunk
    sub: int = 4  # sub-latent grid per latent pixel
    sub_channels: int = 16  # features per sub-latent cell
    head: int = 64  # head channels at the output resolution
    head_blocks: int = 1  # residual blocks in the head


@register
class UpscalerRecipe(Recipe):
    name = "upscaler"
    Options = Options
    log_names = ("mse_roundtrip", "mse_encode", "mse_image")
    eval_names = ("psnr_2x", "psnr_bicubic_2x", "psnr_1.5x", "psnr_bicubic_1.5x", "mse_encode")

    def __init__(self, options: Options, info, device):
        super().__init__(options, info, device)
        o = options
        if o.roundtrip_weight + o.encode_weight + o.image_weight == 0:
            raise InputError("recipe.roundtrip_weight, recipe.encode_weight and recipe.image_weight are all 0: give "
                             "at least one a weight above 0")
        if o.channel_weights not in ("decoder", "uniform") or o.channel_floor < 0:
            raise InputError("recipe.channel_weights is decoder or uniform, and recipe.channel_floor >= 0")
        if o.pairs_per_item < 1:
            raise InputError("recipe.pairs_per_item must be at least 1")
        if any(len(r) != 2 or not 0 < r[0] <= r[1] for r in o.scale_ranges):
            raise InputError("recipe.scale_ranges is a list of [low, high] ratio ranges with 0 < low <= high, "
                             "e.g. [[0.5, 0.5], [1.0, 4.0]]")
        self.space = spaces.get(o.space)
        self.sizes = sorted(info.manifest["sizes"])
        self.keys_by_size = {s: info.key_for(self.space.id, s) for s in self.sizes}
        self.domain = info.encoder_info(self.keys_by_size[self.sizes[0]])["domain"]
        self.down = self.space.taesd_downscale
        self.pairs = [(lo, hi) for lo in self.sizes for hi in self.sizes
                      if lo != hi and self._covered(hi / lo)]
        if not self.pairs:
            raise InputError(f"{info.root}: its sizes {self.sizes} give no pair of sizes with a ratio in "
                             f"{o.scale_ranges}; rebuild it with extra_sizes= (e.g. 64,96,128,160,192,224 for crops of "
                             "size=256)")
        self.eval_pairs = {r: max(((lo, hi) for lo, hi in self.pairs if hi == r * lo), default=None, key=lambda p: p[1])
                           for r in EVAL_RATIOS}
        self._ae = None
        self._store: dict[tuple[int, int], dict[str, torch.Tensor]] | None = None
        self._channel_weights = torch.ones(self.space.taesd_channels)
        self.precompute_s = 0.0  # seconds spent computing round-trip targets (0 when read from the cache)

    def _covered(self, ratio: float) -> bool:
        return any(lo - 1e-6 <= ratio <= hi + 1e-6 for lo, hi in self.options.scale_ranges)

    @property
    def autoencoder(self):
        """The frozen real tiny autoencoder (encoder and decoder): round-trip targets and decoded metrics."""
        if self._ae is None:
            from ... import tiny

            self._ae = tiny.load(self.options.autoencoder or self.space.tiny, device=self.device)
            self._ae.requires_grad_(False)
            if not (self._ae.has_encoder and self._ae.has_decoder):
                raise InputError(f"recipe.autoencoder {self.options.autoencoder or self.space.tiny!r} needs both an "
                                 "encoder and a decoder")
        return self._ae

    @property
    def keys(self) -> list[str]:
        return [self.keys_by_size[s] for s in self.sizes] + [f"image@{s}" for s in self._eval_sizes()]

    def _eval_sizes(self) -> list[int]:
        return sorted({hi for p in self.eval_pairs.values() if p for hi in p[1:]})

    def config(self) -> UpscalerConfig:
        o = self.options
        return UpscalerConfig(self.space.taesd_channels, o.width, o.blocks, o.sub, o.sub_channels, o.head,
                              o.head_blocks, tuple(tuple(float(v) for v in r) for r in o.scale_ranges))

    def build(self) -> dict[str, nn.Module]:
        self._targets()  # computed (or read from the cache) before the first step, so step times stay honest
        net = UpscalerNet(self.config())
        if self.options.init:
            start_from(net, self.options.init, load(self.options.init).net)
        return {"upscaler": net}

    # ---- data -------------------------------------------------------------------------------------------------

    def _taesd(self, latent: torch.Tensor) -> torch.Tensor:
        return latent if self.domain == "taesd" else spaces.convert_domain(latent, self.space, self.domain, "taesd")

    def roundtrip(self, latent: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Decode, resize the image to ``size`` latent pixels (antialiased), encode: the distillation target."""
        ae = self.autoencoder
        image = ae.decode(latent).clamp(0, 1)
        image = F.interpolate(image, size=(size[0] * self.down, size[1] * self.down), mode=self.options.resize,
                              align_corners=False, antialias=True).clamp(0, 1)
        return ae.encode(image)

    def _targets(self) -> dict[tuple[int, int], dict[str, torch.Tensor]]:
        """Per size pair: the low latents, the encoded-at-high-size latents and their round trips (train split)."""
        if self._store is not None:
            return self._store
        o = self.options
        images = [f"image@{s}" for s in self.sizes] if o.image_weight > 0 else []
        data = LatentDataset(self.info, split="train", keys=[self.keys_by_size[s] for s in self.sizes] + images)
        rng = random.Random(f"upscaler:{o.pairs_per_item}")
        rows: dict[tuple[int, int], list[int]] = {p: [] for p in self.pairs}
        for i in range(len(data)):
            for p in rng.sample(self.pairs, min(o.pairs_per_item, len(self.pairs))):
                rows[p].append(i)
        rows = {p: r for p, r in rows.items() if r}
        # the train split is part of the key: a rebuild with other --eval patterns keeps the plan but moves items
        train = hashlib.sha256(json.dumps(data.items, sort_keys=True).encode()).hexdigest()[:16]
        spec = {"plan": self.info.manifest["plan_id"], "train": train, "pairs": sorted(rows),
                "per_item": o.pairs_per_item, "resize": o.resize, "ae": o.autoencoder or self.space.tiny,
                "space": self.space.id}
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
        cache = self.info.root / f"upscaler-targets-{digest}.safetensors"
        roundtrips: dict[str, torch.Tensor] = load_file(str(cache)) if cache.is_file() else {}
        missing = [p for p in rows if _name(p) not in roundtrips]
        start = time.perf_counter()
        if missing:
            total = sum(len(rows[p]) for p in missing)
            with tqdm(total=total, desc="round-trip targets", unit="crop") as bar, torch.no_grad():
                for lo, hi in missing:
                    parts = []
                    for i in range(0, len(rows[(lo, hi)]), 16):
                        idx = torch.tensor(rows[(lo, hi)][i:i + 16])
                        z = self._taesd(data.batch(idx, self.device)[self.keys_by_size[lo]])
                        parts.append(self.roundtrip(z, (hi // self.down, hi // self.down)).half().cpu())
                        bar.update(len(idx))
                    roundtrips[_name((lo, hi))] = torch.cat(parts)
        fresh_sensitivity = SENSITIVITY not in roundtrips
        if fresh_sensitivity:
            roundtrips[SENSITIVITY] = self._sensitivity(roundtrips[_name(max(rows, key=lambda p: (p[1], p[0])))][:8])
        if missing or fresh_sensitivity:  # one write of the cache, whatever was computed
            with atomic_path(cache, overwrite=True) as tmp:
                save_file({k: v.contiguous() for k, v in roundtrips.items()}, str(tmp), metadata={"spec": json.dumps(spec)})
        self._channel_weights = self._weights(roundtrips[SENSITIVITY].float())
        store = {}
        for (lo, hi), r in rows.items():
            idx = torch.tensor(r)
            store[(lo, hi)] = {"lo": self._taesd(data.tensors[self.keys_by_size[lo]][idx].float()).half(),
                               "encode": self._taesd(data.tensors[self.keys_by_size[hi]][idx].float()).half(),
                               "roundtrip": roundtrips[_name((lo, hi))]}
            if images:
                store[(lo, hi)]["image"] = data.tensors[f"image@{hi}"][idx]  # uint8, 0-255
        self._store = store
        self.precompute_s = time.perf_counter() - start
        return store

    @torch.no_grad()
    def _sensitivity(self, latents: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
        """Per channel: mean squared change of the decoded image per unit of latent change (finite differences
        with random signs per pixel, on a few training latents). FLUX.2's decoder moves 100x more for some
        channels than for others, so an unweighted latent MSE spends the network on what the eye never sees."""
        z = latents.to(self.device, torch.float32)
        base = self.autoencoder.decode(z).float()
        gen = torch.Generator().manual_seed(0)
        out = []
        for c in range(z.shape[1]):
            signs = torch.randint(0, 2, (z.shape[0], 1, *z.shape[-2:]), generator=gen).float().mul(2).sub(1)
            dz = torch.zeros_like(z)
            dz[:, c:c + 1] = signs.to(z) * eps
            out.append(float((self.autoencoder.decode(z + dz).float() - base).pow(2).mean()) / eps ** 2)
        return torch.tensor(out)

    def _weights(self, sensitivity: torch.Tensor) -> torch.Tensor:
        """Mean-1 weights of the latent error per channel (uniform, or decoder sensitivity plus a floor)."""
        if self.options.channel_weights == "uniform":
            return torch.ones_like(sensitivity)
        w = sensitivity / sensitivity.mean() + self.options.channel_floor
        return w / w.mean()

    @property
    def channel_weights(self) -> torch.Tensor:
        """The per-channel loss weights, computed once with the targets."""
        self._targets()
        return self._channel_weights

    def _mse(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = self.channel_weights.to(pred.device, pred.dtype).view(1, -1, 1, 1)
        return ((pred - target).pow(2) * w).mean()

    def _draw(self, n: int) -> tuple[tuple[int, int], dict[str, torch.Tensor]]:
        """One size pair and ``n`` of its items, from the torch RNG the trainer seeds per step; random flips."""
        store = self._targets()
        pairs = sorted(store)
        pair = pairs[int(torch.randint(len(pairs), ()))]
        entry = store[pair]
        idx = torch.randint(len(entry["lo"]), (n,))
        batch = {k: v[idx].to(self.device, torch.float32) for k, v in entry.items()}
        if "image" in batch:
            batch["image"] = batch["image"] / 255  # stored as uint8
        if bool(torch.rand(()) < 0.5):
            batch = {k: v.flip(-1) for k, v in batch.items()}
        return pair, batch

    # ---- training and metrics ---------------------------------------------------------------------------------

    def loss(self, nets, batch):
        n = len(next(iter(batch.values())))
        (_, hi), items = self._draw(n)
        size = (hi // self.down, hi // self.down)
        pred = nets["upscaler"](items["lo"], size)
        mse_rt = self._mse(pred, items["roundtrip"])
        mse_enc = self._mse(pred, items["encode"])
        o = self.options
        loss = o.roundtrip_weight * mse_rt + o.encode_weight * mse_enc
        logs = {"mse_roundtrip": float(mse_rt.detach()), "mse_encode": float(mse_enc.detach())}
        if o.image_weight > 0:
            mse_image = window_mse(self.autoencoder, pred[:o.image_batch], items["image"][:o.image_batch],
                                   window=o.image_window, margin=o.image_margin)
            loss = loss + o.image_weight * mse_image
            logs["mse_image"] = float(mse_image.detach())
        return loss, logs

    def _psnr(self, latent: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return metrics.psnr(self.autoencoder.decode(latent), image)

    def _eval_cases(self, batch):
        """Per evaluation ratio that has data: (ratio, low-resolution taesd latent, target latent size, high size)."""
        for ratio, pair in self.eval_pairs.items():
            if pair is not None:
                lo, hi = pair
                yield ratio, self._taesd(batch[self.keys_by_size[lo]]), (hi // self.down, hi // self.down), hi

    def evaluate(self, nets, batch):
        out: dict[str, float] = {}
        net = nets["upscaler"]
        mse = []
        for ratio, z, size, hi in self._eval_cases(batch):
            pred = net(z, size)
            out[f"psnr_{ratio:g}x"] = float(self._psnr(pred, batch[f"image@{hi}"]).mean())
            bicubic = F.interpolate(z, size=size, mode="bicubic", align_corners=False)
            out[f"psnr_bicubic_{ratio:g}x"] = float(self._psnr(bicubic, batch[f"image@{hi}"]).mean())
            mse.append(float(F.mse_loss(pred, self._taesd(batch[self.keys_by_size[hi]]))))
        if mse:
            out["mse_encode"] = sum(mse) / len(mse)
        return out

    def samples(self, nets, batch):
        """Per held-out crop at 2x: photo | bicubic latent | round trip | learned, all through the real decoder."""
        pair = self.eval_pairs.get(2.0) or next(p for p in self.eval_pairs.values() if p)
        lo, hi = pair
        z = self._taesd(batch[self.keys_by_size[lo]][:4])
        size = (hi // self.down, hi // self.down)
        dec = self.autoencoder.decode
        tiles = [batch[f"image@{hi}"][:4],
                 dec(F.interpolate(z, size=size, mode="bicubic", align_corners=False)),
                 dec(self.roundtrip(z, size)),
                 dec(nets["upscaler"](z, size))]
        return torch.cat([t.float().clamp(0, 1) for t in tiles], 3)

    @torch.no_grad()
    def comparison(self, net: UpscalerNet) -> dict[str, float]:
        """Held-out PSNR of the learned upscaler, bicubic latent interpolation and the round trip, per eval ratio."""
        data = LatentDataset(self.info, split="eval", keys=self.keys)
        if len(data) == 0:
            return {}
        sums: dict[str, float] = {}
        for i in range(0, len(data), 16):
            batch = data.batch(torch.arange(i, min(len(data), i + 16)), self.device)
            for ratio, z, size, hi in self._eval_cases(batch):
                image = batch[f"image@{hi}"]
                for name, latent in (("learned", net(z, size)),
                                     ("bicubic", F.interpolate(z, size=size, mode="bicubic", align_corners=False)),
                                     ("roundtrip", self.roundtrip(z, size))):
                    key = f"psnr_{name}_{ratio:g}x"
                    sums[key] = sums.get(key, 0.0) + float(self._psnr(latent, image).sum())
        return {k: v / len(data) for k, v in sums.items()}

    def export(self, nets, out: Path, card: dict[str, Any]) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        net = nets["upscaler"].float().eval()
        cfg = net.config
        params = sum(p.numel() for p in net.parameters())
        metrics = {**card["metrics"], **self.comparison(net)}
        o = self.options
        facts = {k: v for k, v in card.items() if k not in ("config", "metrics")}
        facts["architecture"] = f"{asdict(cfg)}, {params} parameters"
        facts["targets"] = (f"round trip through {o.autoencoder or self.space.tiny} (weight {o.roundtrip_weight:g}, "
                            f"{o.resize} resize), photo encoded at the high size (weight {o.encode_weight:g}), "
                            f"decoded prediction against the photo (weight {o.image_weight:g}, {o.image_window}-pixel "
                            f"windows, margin {o.image_margin}, {o.image_batch} items a step)"
                            + (f", started from {Path(o.init).name}" if o.init else ""))
        facts["channel weights"] = (f"{o.channel_weights}" + (f" (floor {o.channel_floor:g}): " + ", ".join(
            f"{v:.2f}" for v in self.channel_weights.tolist()) if o.channel_weights == "decoder" else ""))
        facts["round-trip targets"] = f"{self.precompute_s:.0f} s to compute (before the training steps)"
        facts["size pairs"] = ", ".join(f"{lo}->{hi}" for lo, hi in sorted(self._targets()))
        ranges = " and ".join(f"{a:g}x" if a == b else f"{a:g}x to {b:g}x" for a, b in cfg.scale_ranges)
        notes = (f"Learned latent upscaler for **{self.space.id}**, conditioned on the ratio ({ranges}). It works on "
                 f"taesd-domain latents ({cfg.channels} channels at /{self.down}); `latentbridge.upscale.upscale("
                 f"latent, '{self.space.id}', 2.0, method='nn', domain=...)` converts from and back to any domain. "
                 "Held-out metrics: PSNR in dB of the latent decoded by the real tiny decoder against the photo at "
                 f"the high size, {card.get('metrics_on', 'held-out images')}; learned vs bicubic latent "
                 "interpolation vs the decode-resize-encode round trip.")
        text = card_text(f"latentbridge upscaler for {self.space.title}", facts, metrics, notes)
        tensors, meta = to_tensors(net, self.space, {weights.CARD: json.dumps({**card, "metrics": metrics}, default=str)})
        return save_model(out / weight_name(self.space), tensors, meta, text, dtype=card.get("storage", "float32"))


def _name(pair: tuple[int, int]) -> str:
    return f"{pair[0]}to{pair[1]}"

