import re

import numpy as np
import pytest
import torch
from PIL import Image
from tests.contract import snapshot
from tests.io.hostile import IMAGE_FILES, PHOTO, png16

from latentbridge import io
from latentbridge.errors import InputError, TooLargeError


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


def _reference(tmp_path) -> torch.Tensor:
    return torch.from_numpy(PHOTO.astype(np.float32) / 255).permute(2, 0, 1)[None]


@pytest.mark.parametrize("case", sorted(IMAGE_FILES))
def test_hostile_image_files_raise_input_error_naming_the_problem(tmp_path, case):
    make, words = IMAGE_FILES[case]
    path = make(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match=re.escape(words)) as caught:
        io.load_image(path)
    assert str(path) in str(caught.value)
    assert snapshot(tmp_path) == before


def test_a_16_bit_grey_png_keeps_its_levels(tmp_path):
    levels = np.linspace(0, 65535, 32 * 48).reshape(32, 48).astype(np.uint16)
    x = io.load_image(png16("g.png", levels)(tmp_path))
    expected = torch.from_numpy(levels.astype(np.float32) / 65535)
    for c in range(3):
        torch.testing.assert_close(x[0, c], expected)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16_bit_colour_pngs_keep_their_levels(tmp_path, channels):
    wide = PHOTO.astype(np.uint16) * 257
    grey = wide[..., :1].repeat(3, 2)
    levels = {2: np.concatenate([wide[..., :1], np.full((32, 48, 1), 65535, np.uint16)], 2), 3: wide,
              4: np.concatenate([wide, np.full((32, 48, 1), 65535, np.uint16)], 2)}[channels]
    x = io.load_image(png16("c.png", levels)(tmp_path))
    want = torch.from_numpy((grey if channels == 2 else wide).astype(np.float32) / 65535).permute(2, 0, 1)[None]
    torch.testing.assert_close(x, want, atol=1 / 255, rtol=0)


@pytest.mark.parametrize("mode", ["P", "RGBA", "CMYK", "L", "LA", "1"])
def test_every_common_mode_loads_as_the_rgb_pillow_gives(tmp_path, mode):
    image = Image.fromarray(PHOTO).convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    image.save(tmp_path / f"x{suffix}")
    with Image.open(tmp_path / f"x{suffix}") as im:
        want = torch.from_numpy(np.asarray(im.convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
    torch.testing.assert_close(io.load_image(tmp_path / f"x{suffix}"), want)


def test_an_exif_rotated_photo_is_loaded_upright(tmp_path):
    image = Image.fromarray(PHOTO)
    exif = image.getexif()
    exif[0x0112] = 6  # stored turned left: show it turned 90 degrees clockwise
    image.save(tmp_path / "r.png", exif=exif)
    x = io.load_image(tmp_path / "r.png")
    torch.testing.assert_close(x, torch.rot90(_reference(tmp_path), -1, (2, 3)))


def test_a_picture_above_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTBRIDGE_MAX_PIXELS", "1000")
    Image.fromarray(PHOTO).save(tmp_path / "x.png")
    with pytest.raises(InputError, match="LATENTBRIDGE_MAX_PIXELS"):
        io.load_image(tmp_path / "x.png")


@pytest.mark.parametrize("size", [0, (0, 8), (8, -1), 2.5, (True, 8)])
def test_load_image_refuses_sizes_that_are_not_positive_whole_numbers(tmp_path, size):
    Image.fromarray(PHOTO).save(tmp_path / "x.png")
    with pytest.raises(InputError, match="size="):
        io.load_image(tmp_path / "x.png", size=size)


def test_a_batch_is_written_as_one_file_per_image(tmp_path):
    x = torch.randint(0, 256, (3, 3, 8, 8)).float() / 255
    paths = io.save_images([tmp_path / f"{i}.png" for i in range(3)], x)
    torch.testing.assert_close(torch.cat([io.load_image(p) for p in paths]), x)


def test_a_batch_with_one_unwritable_name_writes_none(tmp_path):
    (tmp_path / "2.png").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        io.save_images([tmp_path / f"{i}.png" for i in range(3)], torch.rand(3, 3, 8, 8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2.png"]


def test_image_size_reads_the_shown_size_from_the_header(tmp_path):
    image = Image.fromarray(PHOTO)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "r.png", exif=exif)
    assert io.image_size(tmp_path / "r.png") == (32, 48) == tuple(io.load_image(tmp_path / "r.png").shape[:-3:-1])


@pytest.mark.parametrize("case", ["decompression bomb", "picture over Pillow's warning limit"])
def test_image_size_refuses_a_decompression_bomb_as_too_large(tmp_path, case):
    with pytest.raises(TooLargeError, match="decompression bomb"):
        io.image_size(IMAGE_FILES[case][0](tmp_path))


def test_open_image_as_rgb_scales_16_bit_grey_instead_of_clipping(tmp_path):
    levels = np.linspace(0, 65535, 32 * 48).reshape(32, 48).astype(np.uint16)
    rgb = np.asarray(io.open_image(png16("g.png", levels)(tmp_path), rgb=True))
    assert rgb.shape == (32, 48, 3) and np.abs(rgb[..., 0].astype(int) - np.round(levels / 257)).max() <= 1


@pytest.mark.parametrize(("write", "words"), [
    (lambda d: io.save_image(d / "x.png", np.zeros((1, 3, 8, 8))), "got ndarray"),
    (lambda d: io.save_image(d / "x.png", torch.ones(1, 3, 8, 8, dtype=torch.complex64)), "complex64"),
    (lambda d: io.save_image(d / "x.webp", torch.rand(1, 3, 8, 17000)), "WEBP cannot hold"),
    (lambda d: io.save_pil(d / "x.png", "not a picture"), "needs a PIL image"),
    (lambda d: io.save_images([d / "x.png"], torch.rand(2, 3, 8, 8)), "one name per image"),
    (lambda d: io.save_images([d / "x.png"] * 2, torch.rand(2, 3, 8, 8)), "named twice"),
])
def test_image_writers_refuse_what_they_cannot_write_with_input_error(tmp_path, write, words):
    with pytest.raises(InputError, match=re.escape(words)):
        write(tmp_path)
    assert list(tmp_path.iterdir()) == []
