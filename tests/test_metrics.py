import math

import torch

from latentbridge import metrics


def test_psnr_of_a_known_error_is_the_textbook_value_per_image():
    a = torch.zeros(2, 3, 4, 4)
    b = a.clone()
    b[0] += 0.1  # mse 0.01 -> 20 dB
    b[1] += 0.01  # mse 1e-4 -> 40 dB
    torch.testing.assert_close(metrics.psnr(a, b), torch.tensor([20.0, 40.0]))


def test_psnr_clamps_both_images_to_their_range_as_a_viewer_shows_them():
    a, b = torch.full((1, 3, 2, 2), 1.5), torch.ones(1, 3, 2, 2)
    assert math.isclose(float(metrics.psnr(a, b)), 120.0)  # identical once clamped: capped by the 1e-12 floor


def test_psnr_for_images_in_minus_one_to_one_uses_a_peak_of_two():
    a, b = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.2)
    assert math.isclose(float(metrics.psnr(a, b, low=-1.0)), 10 * math.log10(4 / 0.04), rel_tol=1e-6)


def test_relative_mse_is_zero_when_exact_and_one_for_the_targets_mean():
    target = torch.randn(2, 4, 8, 8)
    assert torch.all(metrics.relative_mse(target, target) == 0)
    mean = target.mean((1, 2, 3), keepdim=True).expand_as(target)
    torch.testing.assert_close(metrics.relative_mse(mean, target), torch.full((2,), 255 / 256), rtol=1e-5, atol=1e-6)


def test_relative_mse_divides_by_at_least_the_floor():
    flat = torch.zeros(1, 4, 8, 8)
    torch.testing.assert_close(metrics.relative_mse(flat + 0.1, flat, floor=0.5), torch.tensor([0.01 / 0.5]))
