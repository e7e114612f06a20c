import pytest
import torch
from PIL import Image

from latentbridge import io
from latentbridge.errors import InputError


def test_image_round_trip_is_8_bit_exact(tmp_path):
    x = torch.randint(0, 256, (1, 3, 16, 24)).float() / 255
    io.save_image(tmp_path / "a.png", x)
    torch.testing.assert_close(io.load_image(tmp_path / "a.png"), x)


def test_a_batch_becomes_a_grid(tmp_path):
    io.save_image(tmp_path / "g.png", torch.rand(4, 3, 8, 8))
    assert Image.open(tmp_path / "g.png").size == (2 * 8 + 3 * 2, 2 * 8 + 3 * 2)


def test_animation_is_written_as_animated_webp(tmp_path):
    frames = [torch.rand(3, 16, 16) for _ in range(3)]
    io.save_animation(tmp_path / "a.webp", frames)
    with Image.open(tmp_path / "a.webp") as im:
        assert im.n_frames == 3


def test_unreadable_image_gets_a_clear_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        io.load_image(bad)


def test_images_out_of_range_are_clamped_not_wrapped():
    pil = io.tensor_to_pil(torch.tensor([[[[1.5]], [[-0.5]], [[float("nan")]]]]))[0]
    assert pil.getpixel((0, 0)) == (255, 0, 0)


def test_line_plot_draws_an_image():
    im = io.line_plot({"a": ([0, 1, 2], [0.0, 1.0, 0.5])}, title="t")
    assert im.size == (720, 440)
