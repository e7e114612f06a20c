import pytest
import torch

from latentbridge.tiny import stream, taehv

LAYOUTS = {
    "base": taehv.VideoLayout("base", 16, 1, (2, 2, 1), (1, 2, 2)),
    "super": taehv.VideoLayout("super", 16, 2, (2, 2, 1), (1, 2, 2)),
    "taesdv": taehv.VideoLayout("taesdv", 4, 1, (), ()),
}


def _random(net: torch.nn.Sequential) -> torch.nn.Sequential:
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, p[0].numel() ** -0.5 if p.ndim == 4 else 0.05)
    return net.eval().requires_grad_(False)


def _frames(batch: int, frames: int, channels: int, size: int) -> torch.Tensor:
    return torch.randn(batch * frames, channels, size, size)


def _run_in_chunks(net, x, batch, frames, chunk, **kw):
    memory = stream.Memory()
    per = x.view(batch, frames, *x.shape[1:])
    outs = [stream.forward(net, per[:, i:i + chunk].reshape(-1, *x.shape[1:]), batch, memory, **kw)
            for i in range(0, frames, chunk)]
    return torch.cat([o.view(batch, -1, *o.shape[1:]) for o in outs], 1)


@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("preview", [False, True])
def test_chunks_with_carried_memory_equal_one_pass_and_the_plain_modules(kind, preview):
    layout = LAYOUTS[kind]
    net = _random(taehv.decoder(layout))
    batch, frames = 2, 5
    x = _frames(batch, frames, layout.latent_channels, 3)
    whole = stream.forward(net, x, batch, stream.Memory(), preview=preview)
    chunked = _run_in_chunks(net, x, batch, frames, 2, preview=preview)
    assert (chunked.reshape(whole.shape) - whole).abs().max() < 1e-5
    plain = stream.forward(net, x.clone().requires_grad_(True), batch, stream.Memory(), preview=preview)
    assert plain.requires_grad and (plain.detach() - whole).abs().max() < 1e-4


def test_encoder_chunks_of_whole_tpool_groups_equal_one_pass():
    layout = LAYOUTS["base"]
    net = _random(taehv.encoder(layout))
    x = _frames(1, 8, 3, 16)
    whole = stream.forward(net, x, 1, stream.Memory())
    assert whole.shape == (2, 16, 2, 2)
    assert (_run_in_chunks(net, x, 1, 8, 4).reshape(whole.shape) - whole).abs().max() < 1e-5


def test_memory_blocks_see_the_previous_frame_of_the_same_clip_only():
    layout = LAYOUTS["taesdv"]
    net = _random(taehv.decoder(layout))
    x = _frames(2, 3, 4, 2)
    both = stream.forward(net, x, 2, stream.Memory())
    first = stream.forward(net, x[:3], 1, stream.Memory())
    assert (both[:3] - first).abs().max() < 1e-5  # the second clip's frames never leak into the first
