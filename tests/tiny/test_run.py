import pytest
import torch

from latentbridge.tiny import arch, run

SHAPES = [("standard", 4), ("standard", 16), ("flux_2", 32), ("f32", 32)]


def _randomise(net: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * (0.5 / max(p[0].numel(), 1) ** 0.5))
    return net.eval()


@pytest.mark.parametrize(("variant", "channels"), SHAPES)
def test_forward_decoder_matches_the_module_table(variant, channels):
    dec = _randomise(arch.decoder(channels, variant))
    z = torch.randn(1, channels, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(run.forward(dec, z), dec(z), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("variant", "channels"), SHAPES)
def test_forward_encoder_matches_the_module_table(variant, channels):
    enc = _randomise(arch.encoder(channels, variant))
    x = torch.rand(1, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(run.forward(enc, x), enc(x), atol=1e-5, rtol=1e-5)


def test_forward_leaves_the_input_untouched():
    dec = _randomise(arch.decoder(4))
    z = torch.randn(1, 4, 4, 4)
    before = z.clone()
    with torch.no_grad():
        run.forward(dec, z)
        run.forward(dec, z, start=1)  # starts on a conv: relu must not write into z
    torch.testing.assert_close(z, before, rtol=0, atol=0)


@pytest.mark.parametrize("bias", [False, True])
def test_upsample_conv_equals_upsample_then_conv(bias):
    conv = torch.nn.Conv2d(5, 7, 3, padding=1, bias=bias)
    x = torch.randn(2, 5, 4, 7)
    want = conv(torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))
    torch.testing.assert_close(run.upsample_conv(x, conv.weight, conv.bias), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("variant", "channels", "params"), [
    ("standard", 4, (1_222_532, 1_222_531)), ("standard", 16, (1_229_456, 1_229_443)),
    ("flux_2", 32, (1_338_528, 1_338_499)), ("f32", 32, (1_256_288, 8_301_763)),
])
def test_arch_parameter_counts_match_the_published_models(variant, channels, params):
    count = [sum(p.numel() for p in f(channels, variant).parameters()) for f in (arch.encoder, arch.decoder)]
    assert tuple(count) == params


def _registry_variants() -> list[tuple[str, int]]:
    """(variant, latent channels) of every registry space's tiny autoencoder."""
    from latentbridge import spaces

    found = set()
    for sp in spaces.all():
        if sp.tiny and sp.ndim == 4:
            variant = "f32" if sp.taesd_downscale == 32 else "flux_2" if sp.taesd_channels == 32 else "standard"
            found.add((variant, sp.taesd_channels))
    return sorted(found)


@pytest.mark.parametrize(("variant", "channels"), _registry_variants())
@pytest.mark.parametrize("role", ["encoder", "decoder"])
def test_the_fast_pass_equals_the_readable_table_in_bfloat16_for_every_registry_variant(variant, channels, role):
    net = _randomise(getattr(arch, role)(channels, variant)).to(torch.bfloat16)
    x = (torch.rand(1, 3, 64, 64) if role == "encoder" else torch.randn(1, channels, 2, 2)).to(torch.bfloat16)
    with torch.no_grad():
        want, got = net(x).float(), run.forward(net, x).float()
        exact = _randomise_like(net, variant, channels, role)(x.double())
    # within bfloat16's rounding of the readable table: no further from the float64 answer than it is, plus one ulp
    err_readable = (want - exact).abs().max()
    assert (got - exact).abs().max() <= 2 * err_readable + 2 ** -7 * exact.abs().max()


def _randomise_like(net: torch.nn.Module, variant: str, channels: int, role: str) -> torch.nn.Module:
    twin = getattr(arch, role)(channels, variant).double().eval()
    twin.load_state_dict({k: v.double() for k, v in net.state_dict().items()})
    return twin


def test_the_fused_op_probe_leaves_the_global_random_stream_alone():
    run._pointwise_works.cache_clear()
    torch.manual_seed(7)
    want = torch.rand(3)
    torch.manual_seed(7)
    run._pointwise_works()
    assert torch.equal(torch.rand(3), want)
