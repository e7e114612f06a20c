"""Recipe ``interposer``: a pair of converters src -> dst and dst -> src trained together, v4.0's recipe with its
known bugs fixed (docs/interposer.md).

Losses, all on latents normalised per space (so their sizes compare across spaces), L1 by default:

* ``p``: forward(src) vs dst;  ``b``: backward(dst) vs src;
* ``r``: backward(forward(src)) vs src, training only the forward model;
* ``h``: forward(backward(dst)) vs dst, training only the backward model;
* ``image``: a tiny decoder of the src (or dst) space, frozen, applied to the backward (forward) model's output
  and compared with the photo (mean squared error on random windows): the lever for directions that must invent
  detail, e.g. sana -> flux2 through TAEF2.

In the round trips the partner runs in eval mode with its weights as constants: no BatchNorm statistics are
updated with the other model's predictions and no gradient is computed for it. Step count, the eval fallback
(training crops when a dataset has no held-out split) and checkpoints come from the trainer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ... import metrics, spaces, weights
from ...errors import InputError
from ...interposer import BridgeConfig, BridgeNet, V4Config, V4Interposer, bridge_metadata
from ...interposer.models import load_file, no_denormals
from ..cards import card_text, save_model
from ..dataset import LatentDataset
from ..image_loss import window_mse
from ..recipe import Recipe, register, start_from


@dataclass
class Options:
    # above 0, checked when the config is read
    positive: ClassVar[tuple[str, ...]] = ("width", "hi_width", "image_window", "image_batch")
    choices: ClassVar[dict[str, tuple[str, ...]]] = {"arch": ("bridge", "v4"), "loss": ("l1", "mse", "rel_mse")}

    src: str = "flux2"  # the forward model's input space (the dataset needs an encoder for each space)
    dst: str = "sana"  # the forward model's output space
    arch: str = "bridge"  # bridge: latentbridge's network (any ratio) | v4: the v4.0 layout (BatchNorm, 3x3 convs)
    width: int = 128  # channels at the working resolution (v4: ch_mid)
    blocks: int = 6  # residual blocks at the working resolution
    hi_width: int = 32  # bridge: channels at the finer output resolution, when the output is larger
    hi_blocks: int = 1  # bridge: residual blocks there
    in_blocks: int = 0  # bridge: residual blocks at the input resolution, before it is pooled
    loss: str = "l1"  # l1 | mse | rel_mse (each crop's MSE over its own target variance), on normalised latents
    p_weight: float = 1.0  # forward: src -> dst
    b_weight: float = 1.0  # backward: dst -> src (0 trains the forward model alone)
    r_weight: float = 0.1  # round trip src -> dst -> src, gradient into the forward model only
    h_weight: float = 0.0  # round trip dst -> src -> dst, gradient into the backward model only
    src_decoder: str = ""  # tiny decoder of the src space for the image loss on the backward model (e.g. taef2_decoder)
    dst_decoder: str = ""  # tiny decoder of the dst space for the image loss on the forward model
    image_weight: float = 0.0  # weight of the image loss(es): mean squared error of RGB in [0, 1]
    image_window: int = 14  # latent pixels per side of the window decoded for the image loss
    image_margin: int = 3  # latent pixels at the window's edge left out of the loss (the decoder's tail sees no context)
    image_batch: int = 4  # crops of each batch that get the image loss (decoding is the expensive part)
    eval_decode: int = 4  # held-out crops per eval batch decoded for the PSNR (0 = all; decoding is the cost)
    size: int = 0  # dataset crop size to train on (0 = the dataset's main size)
    init: list[str] = field(default_factory=list)  # interposer files to start from (fine-tuning), each by its spaces


def relative_mse_loss(pred: torch.Tensor, target: torch.Tensor, floor: float = 0.05) -> torch.Tensor:
    """Mean over crops of each crop's MSE divided by its own target variance: the measure the benchmarks report
    (:func:`latentbridge.metrics.relative_mse`), so flat crops weigh as much as busy ones. The variance is floored
    (in normalised units, where the data's per-channel variance is 1) so a near-constant crop cannot swamp a batch."""
    return metrics.relative_mse(pred, target, floor=floor).mean()


_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss, "rel_mse": relative_mse_loss}


def _frozen(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` in eval mode with its weights as constants: gradients reach ``x`` and nothing else."""
    module = getattr(net, "module", net)  # unwrap DistributedDataParallel
    was_training = module.training
    module.eval()
    try:
        params = {k: v.detach() for k, v in module.named_parameters()}
        return torch.func.functional_call(module, params, (x,))
    finally:
        module.train(was_training)


def _load_decoder(name: str, device: torch.device) -> nn.Module:
    """A tiny decoder by name or file (e.g. ``taef2_decoder``), frozen by the caller."""
    from ... import tiny

    return tiny.load(name, device=device)


@register
class InterposerRecipe(Recipe):
    name = "interposer"
    Options = Options
    log_names = ("p", "b", "r", "h", "image")

    def __init__(self, options: Options, info, device):
        super().__init__(options, info, device)
        o = options
        self.src, self.dst = spaces.get(o.src), spaces.get(o.dst)
        if self.src is self.dst:
            raise InputError(f"recipe.src and recipe.dst are both {self.src.id}: an interposer joins two spaces")
        size = o.size or info.size
        self.src_key, self.dst_key = info.key_for(self.src.id, size), info.key_for(self.dst.id, size)
        self.image_key = f"image@{size}"
        self.domains = {self.src.id: info.encoder_info(self.src_key)["domain"],
                        self.dst.id: info.encoder_info(self.dst_key)["domain"]}
        self.ratio = Fraction(self.src.downscale_in(self.domains[self.src.id]),
                              self.dst.downscale_in(self.domains[self.dst.id]))
        self.decoders = {self.src.id: self._decoder(o.src_decoder), self.dst.id: self._decoder(o.dst_decoder)}
        if o.image_weight > 0 and not any(self.decoders.values()):
            raise InputError("recipe.image_weight > 0 needs recipe.src_decoder or recipe.dst_decoder")
        self.eval_names = ("fwd_rel_mse", "back_rel_mse",
                           *(f"{d}_psnr" for d, s in (("fwd", self.dst), ("back", self.src)) if self.decoders[s.id]))
        self.stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.started_from: dict[str, str] = {}  # network name -> the recipe.init file it was loaded from

    def _decoder(self, name: str) -> nn.Module | None:
        return _load_decoder(name, self.device).eval().requires_grad_(False) if name else None

    @property
    def keys(self) -> list[str]:
        return [self.src_key, self.dst_key, self.image_key]

    # networks -------------------------------------------------------------------------------------------------

    def _net(self, space_in: spaces.LatentSpace, space_out: spaces.LatentSpace, ratio: Fraction) -> nn.Module:
        o = self.options
        c_in = space_in.channels_in(self.domains[space_in.id])
        c_out = space_out.channels_in(self.domains[space_out.id])
        if o.arch == "v4":
            return V4Interposer(V4Config(c_in, c_out, o.width, o.blocks, float(ratio)))
        net = BridgeNet(BridgeConfig.for_ratio(c_in, c_out, ratio, width=o.width, blocks=o.blocks,
                                               hi_width=o.hi_width, hi_blocks=o.hi_blocks, in_blocks=o.in_blocks))
        (m_in, s_in), (m_out, s_out) = self._stats(space_in), self._stats(space_out)
        net.set_statistics(m_in, s_in, m_out, s_out)
        return net

    def build(self) -> dict[str, nn.Module]:
        nets = {"forward": self._net(self.src, self.dst, self.ratio),
                "backward": self._net(self.dst, self.src, 1 / self.ratio)}
        for path in self.options.init:
            self._start_from(nets, path)
        return nets

    def _start_from(self, nets: dict[str, nn.Module], path: str) -> None:
        """Load the trained interposer file ``path`` into the network of its direction, statistics included."""
        start, entry = load_file(path)
        directions = {(self.src.id, self.dst.id): "forward", (self.dst.id, self.src.id): "backward"}
        name = directions.get((entry.src, entry.dst))
        if name is None:
            raise InputError(f"recipe.init {path}: it converts {entry.src} -> {entry.dst}, but this recipe trains "
                             f"{self.src.id} <-> {self.dst.id}; name a file of one of its two directions")
        start_from(nets[name], path, start, f"{name} network ")
        self.started_from[name] = Path(path).name

    def _stats(self, space: spaces.LatentSpace) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of a space's latents over the training split (the per-space normalisation)."""
        if not self.stats:
            data = LatentDataset(self.info, split="train", keys=[self.src_key, self.dst_key])
            for sp, key in ((self.src, self.src_key), (self.dst, self.dst_key)):
                t = data.tensors[key].float()
                self.stats[sp.id] = (t.mean((0, 2, 3)), t.std((0, 2, 3)).clamp_min(1e-6))
        return self.stats[space.id]

    def _norm(self, x: torch.Tensor, space: spaces.LatentSpace) -> torch.Tensor:
        mean, std = (v.to(x).view(1, -1, 1, 1) for v in self._stats(space))
        return (x - mean) / std

    # losses -----------------------------------------------------------------------------------------------------

    def _latent_loss(self, pred: torch.Tensor, target: torch.Tensor, space: spaces.LatentSpace) -> torch.Tensor:
        return _LOSSES[self.options.loss](self._norm(pred, space), self._norm(target, space))

    def _image_loss(self, latent: torch.Tensor, image: torch.Tensor, space: spaces.LatentSpace) -> torch.Tensor:
        o = self.options
        latent = spaces.convert_domain(latent[: o.image_batch], space, self.domains[space.id], "taesd")
        return window_mse(self.decoders[space.id], latent, image[: o.image_batch], window=o.image_window,
                          margin=o.image_margin)

    def loss(self, nets, batch):
        o = self.options
        fwd, back = nets["forward"], nets["backward"]
        src, dst, image = batch[self.src_key], batch[self.dst_key], batch[self.image_key]
        terms: dict[str, torch.Tensor] = {}
        to_dst = fwd(src)
        terms["p"] = o.p_weight * self._latent_loss(to_dst, dst, self.dst)
        if o.r_weight:
            terms["r"] = o.r_weight * self._latent_loss(_frozen(back, to_dst), src, self.src)
        if o.b_weight or o.h_weight or (o.image_weight and self.decoders[self.src.id]):
            to_src = back(dst)
            if o.b_weight:
                terms["b"] = o.b_weight * self._latent_loss(to_src, src, self.src)
            if o.h_weight:
                terms["h"] = o.h_weight * self._latent_loss(_frozen(fwd, to_src), dst, self.dst)
        if o.image_weight > 0:
            parts = []
            if self.decoders[self.src.id]:
                parts.append(self._image_loss(to_src, image, self.src))
            if self.decoders[self.dst.id]:
                parts.append(self._image_loss(to_dst, image, self.dst))
            terms["image"] = o.image_weight * sum(parts)
        total = sum(terms.values())
        return total, {k: float(v.detach()) for k, v in terms.items()}

    # evaluation, pictures, export ----------------------------------------------------------------------------

    def _psnr(self, latent: torch.Tensor, image: torch.Tensor, space: spaces.LatentSpace) -> torch.Tensor:
        k = self.options.eval_decode or len(latent)
        latent, image = latent[:k], image[:k]
        picture = self.decoders[space.id].decode(spaces.convert_domain(latent, space, self.domains[space.id], "taesd"))
        return metrics.psnr(picture, image)

    def evaluate(self, nets, batch):
        src, dst, image = batch[self.src_key], batch[self.dst_key], batch[self.image_key]
        to_dst, to_src = nets["forward"](src), nets["backward"](dst)
        out = {"fwd_rel_mse": float(metrics.relative_mse(to_dst, dst).mean()),
               "back_rel_mse": float(metrics.relative_mse(to_src, src).mean())}
        if self.decoders[self.dst.id]:
            out["fwd_psnr"] = float(self._psnr(to_dst, image, self.dst).mean())
        if self.decoders[self.src.id]:
            out["back_psnr"] = float(self._psnr(to_src, image, self.src).mean())
        return out

    def _picture(self, latent: torch.Tensor, space: spaces.LatentSpace, size: tuple[int, int]) -> torch.Tensor:
        """The decoder's picture of a latent, or three of its normalised channels as false colour."""
        if self.decoders[space.id]:
            taesd = spaces.convert_domain(latent, space, self.domains[space.id], "taesd")
            return F.interpolate(self.decoders[space.id].decode(taesd).float().clamp(0, 1), size=size, mode="bilinear")
        rgb = torch.tanh(self._norm(latent, space)[:, :3] / 2).add(1).div(2)
        return F.interpolate(rgb, size=size, mode="nearest")

    def samples(self, nets, batch):
        """Rows: photo | dst target | forward(src) | src target | backward(dst)."""
        src, dst, image = batch[self.src_key], batch[self.dst_key], batch[self.image_key]
        size = tuple(image.shape[-2:])
        cols = [image, self._picture(dst, self.dst, size), self._picture(nets["forward"](src), self.dst, size),
                self._picture(src, self.src, size), self._picture(nets["backward"](dst), self.src, size)]
        return torch.cat(cols, 3)

    def export(self, nets, out: Path, card: dict[str, Any]) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for name, a, b, prefix in (("forward", self.src, self.dst, "fwd"), ("backward", self.dst, self.src, "back")):
            net = nets[name]
            metrics = {k.removeprefix(f"{prefix}_"): v for k, v in card["metrics"].items() if k.startswith(prefix + "_")}
            facts = {k: v for k, v in card.items() if k not in ("config", "metrics")}
            params = sum(p.numel() for p in net.parameters())
            facts["architecture"] = f"{self.options.arch} {asdict(net.config)}, {params} parameters"
            facts["losses"] = {k: getattr(self.options, f"{k}_weight") for k in ("p", "b", "r", "h", "image")}
            facts["latent loss"] = self.options.loss
            if name in self.started_from:
                facts["started from"] = self.started_from[name]
            notes = (f"Interposer {a.title} -> {b.title}: {a.id} latents ({a.channels_in(self.domains[a.id])} channels "
                     f"at /{a.downscale_in(self.domains[a.id])}, {self.domains[a.id]} domain) to {b.id} latents "
                     f"({b.channels_in(self.domains[b.id])} channels at /{b.downscale_in(self.domains[b.id])}), "
                     f"trained with latentbridge's interposer recipe ({card.get('metrics_on', 'held-out images')}). "
                     f"`rel_mse` is the latent MSE relative to the variance of the target latent of each photo; "
                     f"`psnr` (where a decoder exists) is the decoded result against the photo. Use it through "
                     f"`latentbridge.interposer.convert(latent, '{a.id}', '{b.id}', domain=...)`.")
            text = card_text(f"latentbridge interposer {a.id} -> {b.id}", facts, metrics, notes)
            meta = bridge_metadata(net, src=a.id, dst=b.id, domain_in=self.domains[a.id],
                                   domain_out=self.domains[b.id], metrics=metrics)
            meta[weights.CARD] = json.dumps(card, default=str)
            tensors = {k: no_denormals(v.float()) if v.is_floating_point() else v for k, v in net.state_dict().items()}
            written += save_model(out / f"interposer-{a.id}-to-{b.id}.safetensors", tensors, meta, text,
                                  dtype=card.get("storage", "float32"))
        return written
