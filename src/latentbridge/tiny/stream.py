"""Running the :mod:`.taehv` tables over time: a whole clip at once, or chunk by chunk with the state carried over.

Within a chunk every layer runs on all its frames at once (a batch of images); between chunks a :class:`Memory`
keeps what the next chunk needs: each memory block's input at the chunk's last frame. Chunks of whole latent
frames (and, for the encoder, of whole TPool groups) therefore give the same frames as one pass over the clip,
with memory bounded by the chunk instead of the clip.

The inference pass is :mod:`.run`'s, adapted to time (same numbers as the plain modules, up to float rounding):
channels-last activations, ReLU and residual sums fused into the convolutions, and each nearest 2x upsample with
its 3x3 conv as one phase convolution. A TGrow between the two moves before the upsample (a 1x1 conv commutes
with nearest upsampling), so it runs at a quarter of the pixels. A memory block's first conv over ``[x, past]``
runs as a conv of ``x`` with the weights' first half plus, added in place, a conv of the previous frames (a view
of ``x`` shifted by one frame) with the second half: ``[x, past]`` is never built. With gradients wanted the
plain modules run.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from . import arch, run
from .taehv import MEMORY_BLOCKS, MemBlock, SuperMemBlock, TGrow, TPool

CL = torch.channels_last


class Memory:
    """What a table carries from one chunk of frames to the next: per memory block (by index), its last input."""

    def __init__(self) -> None:
        self.last: dict[int, torch.Tensor] = {}


def forward(seq: nn.Sequential, x: torch.Tensor, batch: int, memory: Memory, *, preview: bool = False) -> torch.Tensor:
    """Run a video table on frames ``x`` (batch * T, C, H, W), batch-major; returns (batch * T', C', H', W').

    ``memory`` holds the state from the previous chunk of the same clip and is updated for the next one.
    ``preview`` skips the nearest upsamples and keeps one frame per TGrow (its last): upstream's cheap preview
    with ``decoder_time_upscale`` and ``decoder_space_upscale`` off.
    """
    fast = not (x.requires_grad and torch.is_grad_enabled())
    if fast:
        x = x.contiguous(memory_format=CL)
    layers = list(seq)
    i = 0
    while i < len(layers):
        layer = layers[i]
        after = layers[i + 1 : i + 3]
        if isinstance(layer, MEMORY_BLOCKS):
            x = _memory_block(layer, x, batch, memory, i, fast)
        elif isinstance(layer, TPool):
            x = _tpool(layer, x, fast)
        elif isinstance(layer, TGrow):
            x = _tgrow(layer, x, preview, fast)
        elif isinstance(layer, nn.Upsample):
            if not preview:
                grow = after[0] if after and isinstance(after[0], TGrow) else None
                conv = after[1 if grow else 0] if len(after) > (1 if grow else 0) else None
                if fast and _plain_conv(conv):
                    if grow is not None:
                        x = _tgrow(grow, x, False, fast)
                    x = run.upsample_conv(x, conv.weight, conv.bias)
                    i += 3 if grow is not None else 2
                    continue
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        elif isinstance(layer, nn.Conv2d) and fast:
            relu = bool(after) and isinstance(after[0], nn.ReLU)
            x = _conv(layer, x, relu=relu)
            i += 1 if relu else 0
        elif isinstance(layer, arch.Block) and fast:
            x = run.block(layer, x)
        elif isinstance(layer, arch.Clamp) and fast:
            x = torch.tanh(x / 3).mul_(3)
        elif isinstance(layer, nn.ReLU) and fast and i > 0:
            x = x.relu_()  # an intermediate of this pass, never the caller's tensor
        elif isinstance(layer, nn.PixelShuffle) and fast:
            x = F.pixel_shuffle(x, layer.upscale_factor).contiguous(memory_format=CL)
        else:
            x = layer(x)
        i += 1
    return x


def _plain_conv(layer: nn.Module | None) -> bool:
    return isinstance(layer, nn.Conv2d) and layer.kernel_size == (3, 3) and layer.stride == (1, 1) \
        and layer.groups == 1


def _conv(layer: nn.Conv2d, x: torch.Tensor, *, relu: bool = False, add: torch.Tensor | None = None) -> torch.Tensor:
    if layer.groups == 1:
        return run.conv(x, layer.weight, layer.bias, stride=layer.stride[0], padding=layer.padding[0], relu=relu, add=add)
    y = F.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding, groups=layer.groups)
    if add is not None:
        y = y.add_(add)
    return y.relu_() if relu else y


def _memory_block(block: nn.Module, x: torch.Tensor, batch: int, memory: Memory, index: int,
                  fast: bool) -> torch.Tensor:
    """One memory block over a chunk: each frame with its predecessor (the previous chunk's last, or zeros)."""
    bt, c, h, w = x.shape
    frames = x.view(batch, bt // batch, c, h, w)
    before = memory.last.get(index)
    memory.last[index] = frames[:, -1].clone()  # a copy: a view would keep the whole chunk alive
    if not fast:
        first = before if before is not None else torch.zeros_like(frames[:, 0])
        past = torch.cat([first[:, None], frames[:, :-1]], 1).reshape(bt, c, h, w)
        return block(x, past)
    seq = block.conv
    if isinstance(block, SuperMemBlock):  # its depthwise conv needs [x, past] itself
        both = torch.empty(bt, 2 * c, h, w, dtype=x.dtype, device=x.device, memory_format=CL)
        both[:, :c] = x
        view = both.view(batch, bt // batch, 2 * c, h, w)
        view[:, 1:, c:] = frames[:, :-1]
        view[:, 0, c:] = before if before is not None else 0
        y = _conv(seq[0], both)
        y = _conv(seq[1], y, relu=True)
        return _conv(seq[3], y, add=x)
    y = _conv_with_past(seq[0], x, batch, before)
    if isinstance(block, MemBlock):
        y = _conv(seq[2], y, relu=True)
        return _conv(seq[4], y, relu=True, add=_skip(block, x))
    y = _conv(seq[2], y, relu=True)  # WideMemBlock
    y = _conv(seq[4], y, relu=True)
    return _conv(seq[6], y, relu=True, add=_skip(block, x))


def _conv_with_past(layer: nn.Conv2d, x: torch.Tensor, batch: int, before: torch.Tensor | None) -> torch.Tensor:
    """``relu(conv([x, past]))`` without building ``[x, past]``: the conv of x with the weights' first half, then
    the conv of the previous frames with the second half added in place (one clip at a time)."""
    c, pad = x.shape[1], layer.padding[0]
    y = run.conv(x, layer.weight[:, :c], layer.bias, padding=pad)
    w_past = layer.weight[:, c:].contiguous(memory_format=CL)
    t = x.shape[0] // batch
    for b in range(batch):
        first = b * t
        if t > 1:
            _add_conv(y[first + 1:first + t], x[first:first + t - 1], w_past, pad)
        if before is not None:
            _add_conv(y[first:first + 1], before[b:b + 1].contiguous(memory_format=CL), w_past, pad)
        else:
            y[first:first + 1].relu_()
    return y


def _add_conv(out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, padding: int) -> None:
    """``out = relu(out + conv(x))`` in place (one oneDNN call where available)."""
    if _inplace_fusable(x):
        torch.ops.mkldnn._convolution_pointwise_.binary(out, x, weight, None, [padding] * 2, [1, 1], [1, 1], 1, "add",
                                                        1.0, "relu", [], "")
    else:
        out.add_(F.conv2d(x, weight, None, 1, padding)).relu_()


def _inplace_fusable(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and _inplace_works()


@functools.cache
def _inplace_works() -> bool:
    """Whether this torch build has oneDNN's in-place conv + add + relu and it agrees with ``F.conv2d``."""
    try:
        x = torch.randn(2, 4, 5, 5).contiguous(memory_format=CL)
        w = torch.randn(3, 4, 3, 3).contiguous(memory_format=CL)
        out = torch.randn(2, 3, 5, 5).contiguous(memory_format=CL)
        want = (out + F.conv2d(x, w, None, padding=1)).relu()
        torch.ops.mkldnn._convolution_pointwise_.binary(out[1:], x[1:], w, None, [1, 1], [1, 1], [1, 1], 1, "add", 1.0,
                                                        "relu", [], "")
        return bool(torch.allclose(out[1:], want[1:], atol=1e-4)) and not torch.allclose(out[0], want[0], atol=1e-4)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _skip(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x if isinstance(block.skip, nn.Identity) else _conv(block.skip, x)


def _tpool(pool: TPool, x: torch.Tensor, fast: bool) -> torch.Tensor:
    if not fast:
        return pool(x)
    if pool.stride > 1:  # stack each group of frames on channels (frame-major), channels-last throughout
        bt, c, h, w = x.shape
        s = pool.stride
        nhwc = x.permute(0, 2, 3, 1).reshape(bt // s, s, h, w, c).permute(0, 2, 3, 1, 4)
        x = nhwc.reshape(bt // s, h, w, s * c).permute(0, 3, 1, 2)
    return _conv(pool.conv, x)


def _tgrow(grow: TGrow, x: torch.Tensor, preview: bool, fast: bool) -> torch.Tensor:
    c = grow.conv.weight.shape[1]
    if preview:  # one frame per input frame: the last of the ones it would grow
        weight = grow.conv.weight[-c:]
        return run.conv(x, weight, None, padding=0) if fast else F.conv2d(x, weight)
    if not fast:
        return grow(x)
    y = _conv(grow.conv, x)
    if grow.stride == 1:
        return y
    bt, _, h, w = y.shape
    s = grow.stride
    nhwc = y.permute(0, 2, 3, 1).reshape(bt, h, w, s, c).permute(0, 3, 1, 2, 4)
    return nhwc.reshape(bt * s, h, w, c).permute(0, 3, 1, 2)
