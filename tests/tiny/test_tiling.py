import pytest
import torch
from tests.conftest import shared_file

from latentbridge import tiny
from latentbridge.errors import InputError
from latentbridge.tiny import arch, run, tiling
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


def test_model_decode_tile_real_taef2_matches_untiled():
    m = tiny.load(shared_file("taef2_decoder.pth"))
    z = torch.randn(1, 32, 24, 20) * 0.8
    torch.testing.assert_close(m.decode(z, tile=12), m.decode(z), atol=1e-4, rtol=0)


def test_model_decode_rejects_a_bad_tile():
    m = TinyAutoencoder(variant="standard", latent_channels=4, decoder=arch.decoder(4))
    with pytest.raises(InputError, match="tile"):
        m.decode(torch.randn(1, 4, 2, 2), tile=0)
