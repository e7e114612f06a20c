import torch

from latentbridge.blocks import ResBlock


def test_a_fresh_residual_block_is_the_identity_and_still_learns():
    block = ResBlock(8)
    x = torch.randn(2, 8, 5, 7)
    y = block(x)
    assert torch.equal(y, x)
    (y * torch.randn_like(y)).sum().backward()
    assert block.conv2.weight.grad.abs().sum() > 0  # the zero conv gets a gradient, so training moves it
