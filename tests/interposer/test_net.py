from fractions import Fraction

import pytest
import torch

from latentbridge.errors import InputError
from latentbridge.interposer import BridgeConfig, BridgeNet


@pytest.mark.parametrize("ratio,size,out", [(Fraction(1, 4), (32, 24), (8, 6)), (4, (8, 6), (32, 24)), (1, (9, 7), (9, 7)),
                                            (Fraction(1, 2), (10, 6), (5, 3)), (Fraction(3, 2), (4, 6), (6, 9))])
def test_bridge_net_output_size_follows_the_ratio(ratio, size, out):
    net = BridgeNet(BridgeConfig.for_ratio(5, 3, ratio, width=8, blocks=1, hi_width=4))
    y = net(torch.randn(2, 5, *size))
    assert y.shape == (2, 3, *out)


def test_bridge_net_pads_sizes_that_are_not_multiples_of_down():
    net = BridgeNet(BridgeConfig.for_ratio(4, 4, Fraction(1, 4), width=8, blocks=1))
    assert net(torch.randn(1, 4, 30, 17)).shape == (1, 4, round(30 / 4), round(17 / 4))


def test_bridge_net_starts_from_the_output_statistics():
    net = BridgeNet(BridgeConfig(3, 2, width=8, blocks=2))
    for p in (net.head.weight, net.head.bias, net.skip.weight, net.skip.bias):
        torch.nn.init.zeros_(p)
    net.set_statistics(torch.zeros(3), torch.ones(3), torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5]))
    y = net(torch.randn(1, 3, 4, 4))
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([1.0, -2.0]))
    assert torch.allclose(net.normalise_out(y), torch.zeros_like(y))


def test_bridge_config_round_trips_through_json_and_counts_work():
    c = BridgeConfig.for_ratio(32, 32, Fraction(1, 4), width=64, blocks=3)
    assert BridgeConfig.from_json(c.to_json()) == c
    assert (c.down, c.up) == (4, 1)
    assert 0 < c.flops_per_pixel() < BridgeConfig.for_ratio(32, 32, 4, width=64, blocks=3).flops_per_pixel()


def test_bridge_config_rejects_nonsense_shapes():
    with pytest.raises(InputError):
        BridgeConfig(0, 4)


def test_input_blocks_start_as_the_identity_so_a_grown_net_computes_what_it_grew_from():
    base = BridgeConfig.for_ratio(6, 4, Fraction(1, 4), width=8, blocks=1)
    grown = BridgeConfig.for_ratio(6, 4, Fraction(1, 4), width=8, blocks=1, in_blocks=2)
    small, big = BridgeNet(base), BridgeNet(grown)
    missing, unexpected = big.load_state_dict(small.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("pre.") for k in missing)
    x = torch.randn(2, 6, 16, 12)
    assert torch.equal(big(x), small(x))
    assert grown.flops_per_pixel() == base.flops_per_pixel() + 2 * 2 * (2 * 9 * 6 ** 2)  # 2 flops a multiply-add


def test_input_blocks_let_the_fine_pixels_act_nonlinearly_before_pooling():
    net = BridgeNet(BridgeConfig.for_ratio(3, 2, Fraction(1, 4), width=8, blocks=1, in_blocks=1))
    torch.nn.init.normal_(net.pre[0].conv2.weight)
    x = torch.randn(1, 3, 8, 8)
    y = net(x)
    assert y.shape == (1, 2, 2, 2)
    y.sum().backward()
    assert net.pre[0].conv1.weight.grad.abs().sum() > 0
