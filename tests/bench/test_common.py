"""Tests of bench/common.py's held-out set: read from a fake pool manifest and a fake shared-photo folder.

Nothing here is timed and nothing reads the real pool or ../shared.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COMMON = Path(__file__).resolve().parents[2] / "bench" / "common.py"


@pytest.fixture(scope="module")
def common():
    spec = importlib.util.spec_from_file_location("bench_common", COMMON)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_common"] = module  # its dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def two_band_jpeg(path: Path, size=(96, 64)) -> None:
    """Red outer thirds, green middle third: a centre crop of the short side is all green."""
    w, h = size
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[:, :, 0] = 255
    pixels[:, (w - h) // 2:(w + h) // 2] = (0, 255, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)


ROWS = [  # (file, package, suite, split, licence, author)
    ("images/gcompris-qt-data/cat-1.jpg", "gcompris-qt-data", "bookworm", "eval", "GPL-3+", None),
    ("images/gcompris-qt-data@trixie/dog-2.jpg", "gcompris-qt-data", "trixie", "eval", "GPL-3+", None),
    ("images/lxqt-themes/sky-3.jpg", "lxqt-themes", "bookworm", "eval", "CC-BY-4.0", "Ann Author"),
    ("images/visp-images-data/frame-4.jpg", "visp-images-data", "bookworm", "eval", "CC0-1.0", None),
    ("images/digikam-data/wall-5.jpg", "digikam-data", "bookworm", "eval", "CC-BY-SA-4.0", "Sam Share"),
    ("images/scratch/beach-6.jpg", "scratch", "bookworm", "eval", "CC0", None),  # eval but not a reserved package
    ("images/budgie-backgrounds@trixie/hill-7.jpg", "budgie-backgrounds", "trixie", "train", "CC0-1.0", None),
]


@pytest.fixture
def pool(tmp_path) -> Path:
    lines = []
    for file, package, suite, split, licence, author in ROWS:
        two_band_jpeg(tmp_path / file)
        lines.append(json.dumps({"file": file, "package": package, "suite": suite, "split": split, "license": licence,
                                 "author": author, "category": "photo"}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.fixture
def no_shared(common, monkeypatch, tmp_path):
    monkeypatch.setattr(common, "SHARED_PHOTOS", tmp_path / "no-shared-photos")


@pytest.fixture
def shared(common, monkeypatch, tmp_path) -> Path:
    """14 fake shared photos: the last 12 are the shared held-out set; photo_013 is CC0, the rest GPL-2+."""
    folder = tmp_path / "photos"
    sources = []
    for i in range(14):
        two_band_jpeg(folder / f"photo_{i:03d}.jpg", (64, 64))
        sources.append({"file": f"photo_{i:03d}.jpg", "package": "mate-backgrounds" if i % 2 else "lomiri-wallpapers-16.04",
                        "license": "CC0-1.0" if i == 13 else "GPL-2+", "author": f"Author {i}"})
    (folder / "sources.json").write_text(json.dumps(sources))
    monkeypatch.setattr(common, "SHARED_PHOTOS", folder)
    return folder


def test_pool_held_out_is_every_eval_image_of_the_reserved_packages_in_every_suite(common, pool, no_shared):
    held = common.held_out_set("pool", pool=pool)
    assert held.source == "pool" and held.total == 5
    assert sorted(p.path.relative_to(pool).as_posix() for p in held.pictures) == sorted(r[0] for r in ROWS[:5])
    by_name = {p.name: p for p in held.pictures}
    assert (by_name["sky-3"].package, by_name["sky-3"].license, by_name["sky-3"].author) == (
        "lxqt-themes", "CC-BY-4.0", "Ann Author")
    assert by_name["dog-2"].suite == "trixie"


def test_description_names_each_source_package_with_its_image_count(common, pool, no_shared):
    text = common.held_out_set("pool", pool=pool).describe()
    assert "5 images of the pool's eval split" in text
    assert "gcompris-qt-data (2: bookworm 1, trixie 1)" in text
    assert "lxqt-themes (1)" in text and "visp-images-data (1)" in text and "digikam-data (1)" in text
    assert "scratch" not in text and "budgie" not in text


def test_limit_keeps_the_first_images_and_the_description_says_so(common, pool, no_shared):
    held = common.held_out_set("pool", pool=pool, limit=2)
    assert len(held.pictures) == 2 and held.total == 5
    assert held.pictures == common.held_out_set("pool", pool=pool).pictures[:2]
    assert "limited to the first 2 of its 5 images" in held.describe() and "--limit" in held.describe()


def test_pictures_load_as_their_centred_square_at_the_size_asked(common, pool, no_shared):
    image = common.held_out_set("pool", pool=pool).pictures[0].load(32)
    assert image.shape == (1, 3, 32, 32)
    green = image[0, 1, 4:-4, 4:-4].mean() - image[0, 0, 4:-4, 4:-4].mean()
    assert green > 0.9  # the red side bands were cropped away


def test_only_public_domain_cc0_and_cc_by_pictures_are_shown_and_credited(common, pool, no_shared):
    shown, credit = common.pictured(common.held_out_set("pool", pool=pool), 5)
    assert sorted(p.name for p in shown) == ["frame-4", "sky-3"]  # not GPL, not CC-BY-SA, not outside the set
    assert "sky-3 (Ann Author, CC-BY-4.0, lxqt-themes)" in credit and "CC0-1.0" in credit
    assert "Sam Share" not in credit


@pytest.mark.parametrize(("licence", "allowed"), [
    ("CC0", True), ("CC0-1.0", True), ("CC-BY-4.0", True), ("CC BY 3.0", True), ("public-domain", True),
    ("Public domain (NASA); package BSD-3-Clause", True), ("CC-BY-SA-3.0", False), ("CC BY-SA 4.0", False),
    ("CC-BY-NC-2.0", False), ("CC-BY-ND-4.0", False), ("GPL-3+", False), ("LGPL-2.1+", False),
    ("GFDL-NIV-1.2+", False), ("public-domain (templates) or GPL-2+", False), ("BSD-3-clause", False),
    ("unknown", False),
])
def test_showable_allows_public_domain_cc0_and_cc_by_only(common, licence, allowed):
    assert common.showable(licence) is allowed


def test_a_copyleft_held_out_set_is_pictured_with_shared_photos_that_say_they_are_not_scored(common, pool, shared):
    held = common.held_out_set("pool", pool=pool, limit=2)  # the two GPL-3+ GCompris images
    shown, credit = common.pictured(held, 5)
    assert [p.name for p in shown] == ["photo_013"]
    assert "not among the scored images" in credit and "GPL-3+" in credit


def test_without_showable_pictures_nothing_is_pictured(common, pool, no_shared):
    shown, credit = common.pictured(common.held_out_set("pool", pool=pool, limit=2), 5)
    assert shown == [] and credit.startswith("No picture")


def test_an_absent_pool_falls_back_to_the_shared_photos_and_says_so(common, tmp_path, shared):
    held = common.held_out_set(None, pool=tmp_path / "no-pool")
    assert held.source == "shared" and held.total == 12
    assert [p.name for p in held.pictures] == [f"photo_{i:03d}" for i in range(2, 14)]
    assert "pool is absent" in held.describe() and "mate-backgrounds (6)" in held.describe()


def test_an_existing_pool_is_the_default(common, pool, no_shared):
    assert common.held_out_set(None, pool=pool).source == "pool"


def test_asking_for_an_absent_pool_exits_with_the_fix(common, tmp_path):
    with pytest.raises(SystemExit, match="fetch_pool.py"):
        common.held_out_set("pool", pool=tmp_path / "no-pool")


def test_a_manifest_naming_a_missing_file_exits_with_the_fix(common, pool):
    (pool / ROWS[2][0]).unlink()
    with pytest.raises(SystemExit, match="sky-3.jpg.*fetch_pool.py --force lxqt-themes"):
        common.held_out_set("pool", pool=pool)


def test_reading_the_pool_leaves_pillows_decompression_bomb_limit_as_it_was(common, pool, no_shared, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1234)
    monkeypatch.delitem(sys.modules, "fetch_pool", raising=False)
    common._fetch_pool.cache_clear()  # scripts/fetch_pool.py runs again, as in a fresh process
    common.held_out_set("pool", pool=pool)
    assert Image.MAX_IMAGE_PIXELS == 1234


def test_the_reproducing_command_pins_the_held_out_source_and_hides_the_home_folder(common, pool, no_shared):
    held = common.held_out_set("pool", pool=pool)
    line = common.reproduce("/x/bench/bench_upscale.py", ["--limit", "2", "--pool", str(Path.home() / "p o")], held)
    assert line == "Reproduce: `.venv/bin/python bench/bench_upscale.py --limit 2 --pool ~/'p o' --held-out pool`"
    assert "--held-out shared" in common.reproduce("bench_preview.py", ["--held-out", "shared"], held)
    assert common.reproduce("bench_preview.py", ["--held-out", "shared"], held).count("--held-out") == 1
