import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latentbridge.blocks import ResBlock, patch_conv


def test_a_fresh_residual_block_is_the_identity_and_still_learns():
    block = ResBlock(8)
    x = torch.randn(2, 8, 5, 7)
    y = block(x)
    assert torch.equal(y, x)
    (y * torch.randn_like(y)).sum().backward()
    assert block.conv2.weight.grad.abs().sum() > 0  # the zero conv gets a gradient, so training moves it


@pytest.mark.parametrize("patch", [2, 3, 4])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_patch_conv_equals_a_pointwise_conv_over_the_unshuffled_input(patch, layout):
    conv = nn.Conv2d(5 * patch * patch, 7, 1).to(memory_format=layout)
    x = torch.randn(2, 5, 4 * patch, 3 * patch).contiguous(memory_format=layout)
    torch.testing.assert_close(patch_conv(x, conv, patch), conv(F.pixel_unshuffle(x, patch)), atol=1e-5, rtol=1e-5)
