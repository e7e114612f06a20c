"""The network of city96's SD-Latent-Interposer v4.0, key for key, and a faster inference form of it.

Layout (docs/interposer.md): ``head`` (a 3x3 shortcut conv beside three 3x3 convs, joined by ReLU), ``core``
(index 0 a nearest resize by ``scale``, then ``blocks`` residual blocks whose input passes a BatchNorm, then a
BatchNorm and a SiLU), ``tail`` (one 3x3 conv). The published files hold exactly this ``state_dict``. They map
**raw** latents to raw latents.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsFormatError
from ..weights import state_mismatch


def _conv(ch_in: int, ch_out: int) -> nn.Conv2d:
    return nn.Conv2d(ch_in, ch_out, 3, padding=1)


def _long(ch_in: int, ch: int) -> nn.Sequential:
    """conv -> SiLU -> conv -> SiLU -> conv -> Dropout: the ``long`` branch of both block kinds."""
    return nn.Sequential(_conv(ch_in, ch), nn.SiLU(), _conv(ch, ch), nn.SiLU(), _conv(ch, ch), nn.Dropout(0.1))


class _Head(nn.Module):
    def __init__(self, ch_in: int, ch: int):
        super().__init__()
        self.short = _conv(ch_in, ch)
        self.long = _long(ch_in, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.long(x) + self.short(x))


class _ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(ch)
        self.long = _long(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)  # the residual adds the normalised input, as v4.0 does
        return F.relu(self.long(x) + x)


@dataclass(frozen=True)
class V4Config:
    """Constructor arguments of a v4.0 network; ``scale`` is not stored in the files (it follows from the spaces)."""

    ch_in: int = 4
    ch_out: int = 4
    ch_mid: int = 64
    blocks: int = 12
    scale: float = 1.0

    def flops_per_pixel(self) -> float:
        """Floating-point operations per input latent pixel (2 per multiply-add, convolutions only)."""
        m, s2 = self.ch_mid, self.scale * self.scale
        head = 9 * (2 * self.ch_in * m + 2 * m * m)
        return 2.0 * (head + s2 * 9 * (3 * self.blocks * m * m + m * self.ch_out))

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], *, scale: float = 1.0) -> V4Config:
        """Read the channel counts and block count off a state dict's shapes."""
        try:
            ch_mid, ch_in = sd["head.short.weight"].shape[:2]
            ch_out = sd["tail.weight"].shape[0]
        except (KeyError, ValueError) as e:
            raise WeightsFormatError(f"not a v4.0 interposer state dict: {e} is missing or misshapen "
                                     "(expected head.short.weight and tail.weight)") from None
        blocks = sum(1 for k in sd if k.startswith("core.") and k.endswith(".long.0.weight"))
        return cls(int(ch_in), int(ch_out), int(ch_mid), blocks, scale)


class V4Interposer(nn.Module):
    """Raw latent (B, ch_in, H, W) -> raw latent (B, ch_out, round(H*scale), round(W*scale)), as v4.0 computes."""

    def __init__(self, config: V4Config = V4Config()):
        super().__init__()
        c = config
        self.config = c
        self.head = _Head(c.ch_in, c.ch_mid)
        self.core = nn.Sequential(
            nn.Upsample(scale_factor=c.scale, mode="nearest"),
            *[_ResBlock(c.ch_mid) for _ in range(c.blocks)],
            nn.BatchNorm2d(c.ch_mid),
            nn.SiLU(),
        )
        self.tail = _conv(c.ch_mid, c.ch_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.core(self.head(x)))


def expected_shapes(config: V4Config) -> dict[str, tuple[int, ...]]:
    """Every key of a v4.0 file with ``config`` and its shape (the BatchNorm counters are scalars)."""
    return {k: tuple(v.shape) for k, v in V4Interposer(config).state_dict().items()}


def check_state_dict(sd: dict[str, torch.Tensor], config: V4Config, *, source: str = "the file") -> None:
    """Raise :class:`WeightsFormatError` listing missing, unexpected and misshapen keys, unless ``sd`` fits."""
    mismatch = state_mismatch(expected_shapes(config), sd)
    if not mismatch:
        return
    raise WeightsFormatError(
        f"{source} does not match the v4.0 interposer layout for {config.ch_in}->{config.ch_out} channels, "
        f"{config.ch_mid} wide, {config.blocks} blocks: {mismatch}. Use an unmodified "
        "{src}-to-{dst}_interposer-v4.0.safetensors from city96/SD-Latent-Interposer"
    )


def load_v4(sd: dict[str, torch.Tensor], *, scale: float = 1.0, source: str = "the file") -> V4Interposer:
    """A v4.0 network in eval mode with the weights of ``sd`` (checked key for key first)."""
    config = V4Config.from_state_dict(sd, scale=scale)
    check_state_dict(sd, config, source=source)
    net = V4Interposer(config)
    net.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return net.eval()


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) with bn(x) = a * x + b in eval mode."""
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return a, bn.bias - bn.running_mean * a


class _FoldedConv(nn.Module):
    """conv(zero_pad(a * x + b)) computed as conv'(zero_pad(x)) plus a correction on the one-pixel border.

    Folding the affine map into the weights is exact inside the image; on the border the zero padding of the
    original sees ``b`` where the folded conv sees 0, which a per-size bias map repairs (cached per shape).
    """

    def __init__(self, conv: nn.Conv2d, a: torch.Tensor, b: torch.Tensor):
        super().__init__()
        w = conv.weight.detach()
        self.weight = nn.Parameter(w * a.view(1, -1, 1, 1), requires_grad=False)
        tap = torch.einsum("oiyx,i->oyx", w, b.detach())  # each tap's contribution of the constant b
        self.bias = nn.Parameter(conv.bias.detach() + tap.sum((1, 2)), requires_grad=False)
        self.register_buffer("tap", tap.unsqueeze(1), persistent=False)
        self._border: dict[tuple, torch.Tensor] = {}

    def border(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """What the padded positions take away: conv of the constant over the image minus its interior value."""
        key = (h, w, like.device, like.dtype)
        if key not in self._border:
            ones = torch.ones(1, 1, h, w, device=like.device, dtype=like.dtype)
            full = F.conv2d(ones, self.tap.to(like), padding=1)
            self._border[key] = full - self.tap.to(like).sum((1, 2, 3)).view(1, -1, 1, 1)
        return self._border[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, padding=1)
        h, w = x.shape[-2:]
        corr = self.border(h, w, y)
        if h <= 2 or w <= 2:
            return y + corr
        for sl in ((..., slice(0, 1), slice(None)), (..., slice(h - 1, h), slice(None)),
                   (..., slice(1, h - 1), slice(0, 1)), (..., slice(1, h - 1), slice(w - 1, w))):
            y[sl] += corr[sl]
        return y


class _FusedBlock(nn.Module):
    """relu(long(a*x + b) + a*x + b) with the BatchNorm folded into the first conv and the residual bias."""

    def __init__(self, block: _ResBlock):
        super().__init__()
        a, b = _bn_affine(block.norm)
        c1, c2, c3 = block.long[0], block.long[2], block.long[4]
        self.conv1 = _FoldedConv(c1, a, b)
        self.conv2, self.conv3 = c2, c3
        self.register_buffer("a", a.detach().view(1, -1, 1, 1), persistent=False)
        self.register_buffer("b", b.detach().view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.conv2(F.silu(self.conv1(x))))
        h = F.conv2d(h, self.conv3.weight, self.conv3.bias, padding=1)
        h += self.b
        return torch.addcmul(h, x, self.a).relu_()


class FusedV4(nn.Module):
    """Inference-only form of a :class:`V4Interposer` in eval mode: equal outputs (within float rounding), fewer
    passes over memory: the head's two input convs run as one, BatchNorms fold into the next conv, dropout and a
    scale-1 resize disappear."""

    def __init__(self, net: V4Interposer):
        super().__init__()
        net = net.eval()
        self.config = net.config
        head = net.head
        self.head_in = nn.Conv2d(head.short.in_channels, 2 * head.short.out_channels, 3, padding=1)
        self.head_in.weight.data = torch.cat([head.long[0].weight, head.short.weight]).detach().clone()
        self.head_in.bias.data = torch.cat([head.long[0].bias, head.short.bias]).detach().clone()
        self.head_mid, self.head_out = head.long[2], head.long[4]
        self.scale = net.config.scale
        blocks = [m for m in net.core if isinstance(m, _ResBlock)]
        self.blocks = nn.ModuleList(_FusedBlock(b) for b in blocks)
        a, b = _bn_affine(net.core[-2])
        self.register_buffer("a", a.detach().view(1, -1, 1, 1), persistent=False)
        self.register_buffer("b", b.detach().view(1, -1, 1, 1), persistent=False)
        self.tail = net.tail
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.head_out.in_channels
        both = self.head_in(x)
        long, short = both[:, :mid], both[:, mid:]
        h = self.head_out(F.silu(self.head_mid(F.silu(long))))
        h = (h + short).relu_()
        if self.scale != 1.0:
            h = F.interpolate(h, scale_factor=self.scale, mode="nearest")
        for block in self.blocks:
            h = block(h)
        return self.tail(F.silu(torch.addcmul(self.b, h, self.a)))
