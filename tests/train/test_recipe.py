from dataclasses import replace
from fractions import Fraction

import pytest
import torch

from latentbridge.errors import InputError
from latentbridge.interposer import BridgeConfig, BridgeNet
from latentbridge.train.recipe import grows, start_from
from latentbridge.upscale.learned import UpscalerConfig, UpscalerNet

BRIDGE = BridgeConfig.for_ratio(6, 4, Fraction(1, 4), width=8, blocks=1, hi_blocks=1)
UP_BRIDGE = BridgeConfig.for_ratio(4, 6, Fraction(2), width=8, blocks=1, hi_width=4, hi_blocks=1)
UPSCALER = UpscalerConfig(channels=4, width=8, blocks=1, sub=2, sub_channels=4, head=8, head_blocks=1)


def _run(net, x):
    return net(x, (9, 7)) if isinstance(net, UpscalerNet) else net(x)


def _trained(net):
    """Weights that are not the identity-at-start ones, so the check sees every block act."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    return net


@pytest.mark.parametrize("base, build", [(BRIDGE, BridgeNet), (UP_BRIDGE, BridgeNet), (UPSCALER, UpscalerNet)],
                         ids=["bridge-down", "bridge-up", "upscaler"])
def test_a_net_grown_by_any_block_count_starts_as_the_trained_net_it_loads(base, build):
    start = _trained(build(base))
    x = torch.randn(2, base.channels if build is UpscalerNet else base.ch_in, 8, 8)
    for count in type(base).GROWABLE:
        grown = replace(base, **{count: getattr(base, count) + 2})
        assert grows(grown, base) and not grows(base, grown)
        net = build(grown)
        start_from(net, "start.safetensors", start)
        with torch.no_grad():
            assert torch.allclose(_run(net, x), _run(start, x), atol=1e-6), count


@pytest.mark.parametrize("base", [BRIDGE, UPSCALER], ids=["bridge", "upscaler"])
def test_only_added_blocks_count_as_growth(base):
    assert not grows(base, base)
    assert not grows(replace(base, width=base.width + 4), base)
    first, second = type(base).GROWABLE[:2]
    mixed = replace(base, **{first: getattr(base, first) + 1, second: getattr(base, second) - 1})
    assert not grows(mixed, base)
    assert not grows(BRIDGE, UPSCALER) and not grows(UPSCALER, BRIDGE)


def test_start_from_refuses_a_file_of_another_width_and_names_the_fix():
    start = BridgeNet(BRIDGE)
    with pytest.raises(InputError, match="only add blocks"):
        start_from(BridgeNet(replace(BRIDGE, width=12)), "start.safetensors", start)
