import pytest
import torch
from tests.conftest import shared_file

from latentbridge import tiny
from latentbridge.errors import InputError
from latentbridge.tiny import arch, run, tiling
from latentbridge.tiny import model as tiny_model
from latentbridge.tiny.model import TinyAutoencoder


def _random_decoder(channels: int, variant: str) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return arch.decoder(channels, variant).eval().requires_grad_(False)


@pytest.mark.parametrize(("variant", "channels", "size", "tile"), [
    ("standard", 4, (15, 23), 11), ("flux_2", 32, (14, 21), 11), ("f32", 32, (3, 5), 2)])
def test_decode_tiled_matches_untiled(variant, channels, size, tile):
    dec = _random_decoder(channels, variant)
    z = torch.randn(1, channels, *size)
    with torch.no_grad():
        want = run.forward(dec, z)
        got = tiling.decode_tiled(dec, z, tile=tile)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_decode_tiled_without_margin_differs():
    """The margin is what makes tiles exact: with none, the tile edges show."""
    dec = _random_decoder(4, "standard")
    z = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        assert (tiling.decode_tiled(dec, z, tile=4, margin=0) - run.forward(dec, z)).abs().max() > 1e-4


def test_receptive_margin_covers_the_tail():
    dec = arch.decoder(4)
    # after the first upsample: 10 convs at x2, 10 at x4, 5 at x8 -> 5 + 2.5 + 0.625 latent pixels
    assert tiling.receptive_margin(dec, tiling.split_index(dec)) == 9


def test_groupnorm_branch_chunked_matches_whole():
    dec = _random_decoder(32, "flux_2")
    x = torch.randn(2, 64, 11, 9)
    with torch.no_grad():
        torch.testing.assert_close(tiling.groupnorm_branch_chunked(dec[3].pool, x, rows=3),
                                   run.groupnorm_branch(dec[3].pool, x), atol=1e-5, rtol=1e-4)


def test_decode_window_sees_the_whole_latents_groupnorm_statistics_and_passes_gradients():
    dec = _random_decoder(32, "flux_2")
    rows = torch.linspace(0.2, 4.0, 24)[:, None]  # statistics that differ across the latent
    z = (torch.randn(2, 32, 24, 24) * rows).requires_grad_()
    top, left, size = 3, 2, 20  # a margin of 9 (the tail's receptive field) on the inner 2x2 latent pixels
    window = tiling.decode_window(dec, z, top, left, size)
    with torch.no_grad():
        whole = run.forward(dec, z)
        alone = run.forward(dec, z[..., top:top + size, left:left + size])
    inner = (slice(None), slice(None), slice(9 * 8, 11 * 8), slice(9 * 8, 11 * 8))
    at = (slice(None), slice(None), slice((top + 9) * 8, (top + 11) * 8), slice((left + 9) * 8, (left + 11) * 8))
    torch.testing.assert_close(window[inner].detach(), whole[at], atol=1e-4, rtol=0)
    assert (alone[inner] - whole[at]).abs().max() > 1e-3  # decoded alone, the GroupNorm statistics move
    window.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_model_decode_tile_real_taef2_matches_untiled():
    m = tiny.load(shared_file("taef2_decoder.pth"))
    z = torch.randn(1, 32, 24, 20) * 0.8
    torch.testing.assert_close(m.decode(z, tile=12), m.decode(z), atol=1e-4, rtol=0)


def test_model_decode_rejects_a_bad_tile():
    m = TinyAutoencoder(variant="standard", latent_channels=4, decoder=arch.decoder(4))
    with pytest.raises(InputError, match="tile"):
        m.decode(torch.randn(1, 4, 2, 2), tile=0)


@pytest.mark.parametrize(("variant", "channels", "size", "tile"), [
    ("standard", 4, (15, 23), 6), ("flux_2", 32, (14, 21), 5), ("f32", 32, (3, 5), 2)])
def test_encode_tiled_matches_untiled(variant, channels, size, tile):
    torch.manual_seed(0)
    enc = arch.encoder(channels, variant).eval().requires_grad_(False)
    d = 32 if variant == "f32" else 8
    images = torch.rand(2, 3, size[0] * d, size[1] * d)
    with torch.no_grad():
        want = run.forward(enc, images)
        got = tiling.encode_tiled(enc, images, tile=tile)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_images_above_the_threshold_are_encoded_in_tiles_with_the_same_result(monkeypatch):
    model = TinyAutoencoder(variant="standard", latent_channels=4, encoder=arch.encoder(4).eval())
    images = torch.rand(1, 3, 96, 160)
    whole = model.encode(images)
    monkeypatch.setattr(tiny_model, "TILE_ABOVE", 64 * 64)
    monkeypatch.setattr(tiny_model, "TILE_PIXELS", 32)
    seen, real = [], tiling.encode_tiled
    monkeypatch.setattr(tiling, "encode_tiled", lambda enc, x, **k: seen.append(k["tile"]) or real(enc, x, **k))
    torch.testing.assert_close(model.encode(images), whole, atol=1e-5, rtol=0)
    assert seen == [4]
    torch.testing.assert_close(model.encode(images, tile=3), whole, atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="tile=0"):
        model.encode(images, tile=0)
