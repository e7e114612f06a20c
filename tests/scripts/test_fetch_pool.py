"""Tests of scripts/fetch_pool.py on small synthetic inputs: licences, filters, conversion, dedup, splits, resume.

No network: downloading and unpacking are replaced by a fake package tree.
"""

from __future__ import annotations

import importlib.util
import io
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fetch_pool.py"


@pytest.fixture(scope="module")
def fp():
    spec = importlib.util.spec_from_file_location("fetch_pool", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fetch_pool"] = module
    spec.loader.exec_module(module)
    return module


def photo_like(seed: int, size=(640, 480)) -> np.ndarray:
    """Smooth random structure plus sensor-like noise: statistics of a photograph, different per seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize(size, Image.BICUBIC), dtype=np.float64)
    noise = rng.normal(0, 6, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def jpeg_bytes(arr: np.ndarray, quality=90, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2002-2014, The Team
License: GPL-2+

Files: base/textures/tex_nature/*
 base/textures/tex_misc/books.jpg
Copyright:
 Jane Doe
 John Roe
License: CC-BY-3.0

Files: debian/*
Copyright: 2020, Packager
License: Expat

License: GPL-2+
 This program is free software.
"""


def test_parse_dep5_reads_stanzas_in_order(fp):
    stanzas, header = fp.parse_dep5(DEP5)
    assert [s.files for s in stanzas] == [("*",), ("base/textures/tex_nature/*", "base/textures/tex_misc/books.jpg"), ("debian/*",)]
    assert [s.license for s in stanzas] == ["GPL-2+", "CC-BY-3.0", "Expat"]
    assert stanzas[1].copyright == "Jane Doe; John Roe"
    assert header is None
    assert fp.package_license(stanzas, header) == "GPL-2+"


def test_license_for_matches_installed_paths_by_pattern_suffix(fp):
    stanzas, _ = fp.parse_dep5(DEP5)
    installed = "usr/share/games/demo/base/textures/tex_nature/rock01.png"
    assert fp.license_for(stanzas, installed, "?") == ("CC-BY-3.0", "Jane Doe; John Roe")
    assert fp.license_for(stanzas, "usr/share/games/demo/base/textures/tex_misc/books.jpg", "?")[0] == "CC-BY-3.0"
    assert fp.license_for(stanzas, "usr/share/games/demo/base/textures/tex_misc/other.jpg", "?") == ("GPL-2+", None)


def test_dep5_pattern_matches_never_widens_to_a_bare_wildcard(fp):
    assert not fp.dep5_pattern_matches("debian/*", "usr/share/backgrounds/a.jpg")
    assert fp.dep5_pattern_matches("debian/*", "debian/patches/x")
    assert fp.dep5_pattern_matches("src/activities/hunt/resource/*", "gcompris/src/activities/hunt/resource/img/a.jpg")
    assert not fp.dep5_pattern_matches("src/activities/hunt/resource/*", "gcompris/src/activities/other/resource/a.jpg")
    assert fp.dep5_pattern_matches("backgrounds/nature/Aqua.jpg", "usr/share/backgrounds/mate/nature/Aqua.jpg")
    assert fp.dep5_pattern_matches("*", "usr/share/anything.png")


def test_parse_dep5_free_form_file_falls_back_to_a_note(fp):
    stanzas, header = fp.parse_dep5("This package was debianized by someone.\n\nIt is GPL.\n")
    assert stanzas == [] and header is None
    assert "not machine-readable" in fp.package_license(stanzas, header)
    assert fp.license_for(stanzas, "usr/share/x.jpg", "fallback") == ("fallback", None)


@pytest.mark.parametrize(
    ("name", "split"),
    [("gcompris-qt-data", "eval"), ("lxqt-themes", "eval"), ("gimp-help-en", "eval"), ("visp-images-data", "eval"),
     ("digikam-data", "eval"), ("mate-backgrounds", "train"), ("pypi:scikit-image", "train"), ("gimp-help-de", "train")],
)
def test_split_for_reserves_the_five_evaluation_packages(fp, name, split):
    assert fp.split_for(name) == split
    assert fp.PackageSpec(name).split == split


def test_order_for_processing_puts_evaluation_packages_first(fp):
    specs = fp.resolve_specs(["mate-backgrounds", "visp-images-data", "some-new-package", "lxqt-themes"])
    ordered = [s.name for s in fp.order_for_processing(specs)]
    assert ordered == ["visp-images-data", "lxqt-themes", "mate-backgrounds", "some-new-package"]
    assert specs[2].include == ("*",) and specs[2].source == "deb"
    assert fp.PackageSpec("pypi:scikit-image").source == "pypi" and fp.PackageSpec("pypi:scikit-image").dist == "scikit-image"


def test_default_list_covers_every_reserved_package(fp):
    names = {s.name for s in fp.DEFAULT_PACKAGES}
    assert fp.RESERVED_EVAL <= names
    assert all(s.split == "train" for s in fp.DEFAULT_PACKAGES if s.name not in fp.RESERVED_EVAL)


def test_path_selected_applies_includes_and_default_excludes(fp):
    spec = fp.PackageSpec("x", include=("usr/share/backgrounds/*", "*.pk3:textures/*"), exclude=("*draft*",))
    assert fp.path_selected("usr/share/backgrounds/lake.jpg", spec)
    assert not fp.path_selected("usr/share/doc/x/lake.jpg", spec)
    assert not fp.path_selected("usr/share/backgrounds/lake_draft.jpg", spec)
    assert not fp.path_selected("usr/share/backgrounds/icons/lake.png", spec)
    assert fp.path_selected("a/b.pk3:textures/rock.png", spec)
    assert not fp.path_selected("a/b.pk3:textures/rock_nm.png", spec)


def test_reject_reason_keeps_photographs(fp):
    t = fp.Thresholds()
    for seed in range(3):
        rgb = photo_like(seed)
        assert fp.reject_reason((640, 480), 0.0, fp.image_features(rgb), t) is None
    gray = photo_like(7).mean(-1, keepdims=True).repeat(3, -1).astype(np.uint8)
    feats = fp.image_features(gray)
    assert feats.grayscale and feats.colours <= 16  # few colours, yet a photograph
    assert fp.reject_reason((640, 480), 0.0, feats, t) is None


def test_reject_reason_names_graphics_text_and_cutouts(fp):
    t = fp.Thresholds()
    flat = np.zeros((480, 640, 3), np.uint8)
    flat[:, :320] = (200, 40, 40)
    flat[:, 320:] = (30, 90, 200)
    assert fp.reject_reason((640, 480), 0.0, fp.image_features(flat), t) == "flat-graphic"
    page = np.full((600, 480, 3), 255, np.uint8)
    rng = np.random.default_rng(0)
    for y in range(20, 580, 14):  # lines of "text": dark strokes with anti-aliased grey edges
        xs = rng.integers(20, 440, 40)
        for x in xs:
            page[y:y + 8, x:x + 3] = 0
            page[y:y + 8, x + 3] = 128
    assert fp.reject_reason((480, 600), 0.0, fp.image_features(page), t) in ("text-or-line-art", "flat-graphic")
    assert fp.reject_reason((300, 600), 0.0, None, t) == "too-small"
    assert fp.reject_reason((640, 480), 0.4, None, t) == "transparent"


def test_to_srgb_flattens_alpha_on_white_and_counts_transparency(fp):
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :10, 3] = 255  # left half opaque red, right half transparent
    out, transparent = fp.to_srgb(Image.fromarray(rgba, "RGBA"))
    arr = np.asarray(out)
    assert out.mode == "RGB" and transparent == pytest.approx(0.5)
    assert (arr[:, :10] == (255, 0, 0)).all() and (arr[:, 10:] == 255).all()


def test_to_srgb_applies_exif_orientation_and_expands_16_bit_gray(fp):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    im = Image.open(io.BytesIO(jpeg_bytes(photo_like(1, (64, 32)), exif=exif.tobytes())))
    out, _ = fp.to_srgb(im)
    assert out.size == (32, 64)
    gray16 = Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20)
    out16, _ = fp.to_srgb(gray16)
    assert out16.mode == "RGB" and np.asarray(out16).max() == 255


def test_resize_short_never_upscales_and_caps_the_long_side(fp):
    assert fp.resize_short(Image.new("RGB", (1024, 768)), 512, 2048).size == (683, 512)
    assert fp.resize_short(Image.new("RGB", (480, 360)), 512, 2048).size == (480, 360)
    assert fp.resize_short(Image.new("RGB", (8000, 1000)), 512, 2048).size == (2048, 256)


def test_phash_matches_a_rescaled_recompressed_copy_and_not_another_photo(fp):
    a = Image.fromarray(photo_like(3))
    copy = Image.open(io.BytesIO(jpeg_bytes(np.asarray(a.resize((320, 240), Image.BILINEAR)), quality=70)))
    other = Image.fromarray(photo_like(4))
    assert fp.hamming(fp.phash(a), fp.phash(copy)) <= 6
    assert fp.hamming(fp.phash(a), fp.phash(other)) > 12


def test_deduper_finds_exact_and_near_duplicates(fp):
    d = fp.Deduper(max_distance=6)
    d.add("sha-shared", None, "shared:photo_000.jpg")
    d.add("sha-a", 0b1011, "images/p/a.jpg")
    assert d.find("sha-shared", None) == "shared:photo_000.jpg"
    assert d.find("sha-new", 0b1011 ^ 0b111) == "images/p/a.jpg"  # 3 bits apart
    assert d.find("sha-new", (1 << 63) | (1 << 40) | 0xFFFF) is None
    d.remove("images/p/a.jpg")
    assert d.find("sha-a", 0b1011) is None


def test_write_manifest_is_sorted_json_lines_and_atomic(fp, tmp_path, monkeypatch):
    path = tmp_path / "manifest.jsonl"
    fp.write_manifest(path, [{"file": "b.jpg", "split": "train"}, {"file": "a.jpg", "split": "eval"}])
    assert [r["file"] for r in fp.read_manifest(path)] == ["a.jpg", "b.jpg"]

    def fail(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(fp.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        fp.write_manifest(path, [{"file": "c.jpg"}])
    assert [r["file"] for r in fp.read_manifest(path)] == ["a.jpg", "b.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl"]


def build_rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A format-2 Qt resource bundle with one folder ``img`` holding ``files`` (name -> (data, zlib-compressed))."""
    names_blob, name_offsets = b"", {}
    for name in ["img", *files]:
        name_offsets[name] = len(names_blob)
        names_blob += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
    data_blob, data_offsets = b"", {}
    for name, (data, compressed) in files.items():
        payload = struct.pack(">I", len(data)) + zlib.compress(data) if compressed else data
        data_offsets[name] = len(data_blob)
        data_blob += struct.pack(">I", len(payload)) + payload
    nodes = [struct.pack(">IHII", 0, 0x02, 1, 1) + b"\0" * 8,  # root: 1 child at index 1
             struct.pack(">IHII", name_offsets["img"], 0x02, len(files), 2) + b"\0" * 8]
    for name, (_, compressed) in files.items():
        nodes.append(struct.pack(">IHHHI", name_offsets[name], 0x01 if compressed else 0, 0, 0, data_offsets[name]) + b"\0" * 8)
    tree = b"".join(nodes)
    tree_at = 20
    data_at = tree_at + len(tree)
    return b"qres" + struct.pack(">IIII", 2, tree_at, data_at, data_at + len(data_blob)) + tree + data_blob + names_blob


def test_parse_rcc_reads_plain_and_compressed_entries(fp):
    a, b = jpeg_bytes(photo_like(1, (40, 30))), b"\x89PNG fake"
    files = fp.parse_rcc(build_rcc({"a.jpg": (a, False), "b.png": (b, True)}))
    assert files == {"/img/a.jpg": a, "/img/b.png": b}
    with pytest.raises(ValueError, match="qres"):
        fp.parse_rcc(b"nope" + b"\0" * 20)


def test_edj_members_yield_the_largest_embedded_jpeg(fp, tmp_path):
    small, large = jpeg_bytes(photo_like(1, (160, 90))), jpeg_bytes(photo_like(1, (640, 360)))
    (tmp_path / "bg.edj").write_bytes(b"EET header" + small + b"\0junk\xff\xd8" + large + b"tail")
    members = list(fp.iter_members(tmp_path))
    assert len(members) == 1 and members[0].read() == large
    assert members[0].path.startswith("bg.edj:jpeg@")


def make_fake_package(root: Path, name: str, images: dict[str, bytes], copyright_text: str = DEP5) -> None:
    for rel, data in images.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    doc = root / "usr" / "share" / "doc" / name
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "copyright").write_text(copyright_text)


@pytest.fixture
def offline_packages(fp, monkeypatch, tmp_path):
    """Replace downloading/dpkg-deb with fake package trees: {NAME or NAME@SUITE: {path: bytes}}."""
    trees: dict[str, dict[str, bytes]] = {}

    def download(spec, dest):
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / f"{spec.folder}_1.0-1_all.deb"  # NAME, or NAME@SUITE outside bookworm
        path.write_bytes(b"fake")
        return path

    def unpack(archive, dest):
        folder = archive.name.split("_")[0]
        dest.mkdir(parents=True, exist_ok=True)
        make_fake_package(dest, folder.split("@")[0], trees[folder])

    monkeypatch.setattr(fp, "download", download)
    monkeypatch.setattr(fp, "unpack", unpack)
    monkeypatch.setattr(fp, "deb_version", lambda archive: "1.0-1")
    return trees


def test_pool_keeps_eval_images_out_of_training_and_resumes(fp, tmp_path, offline_packages, monkeypatch):
    shared = tmp_path / "sources.json"
    shared_photo = jpeg_bytes(photo_like(20))
    shared.write_text(json.dumps([{"file": "photo_000.jpg", "original_sha256": fp.hashlib.sha256(shared_photo).hexdigest()}]))
    eval_photo, train_photo = jpeg_bytes(photo_like(10)), jpeg_bytes(photo_like(11))
    recompressed_eval = jpeg_bytes(np.asarray(Image.open(io.BytesIO(eval_photo)).resize((560, 420))), quality=75)
    flat = np.zeros((480, 640, 3), np.uint8)
    offline_packages["lxqt-themes"] = {"usr/share/lxqt/wallpapers/lake.jpg": eval_photo}
    offline_packages["photo-pack"] = {
        "usr/share/backgrounds/a_by_Jane_Doe.jpg": train_photo,
        "usr/share/backgrounds/copy_of_eval.jpg": recompressed_eval,
        "usr/share/backgrounds/shared.jpg": shared_photo,
        "usr/share/backgrounds/flat.png": jpeg_bytes(flat),
        "usr/share/backgrounds/tiny.jpg": jpeg_bytes(photo_like(12, (100, 80))),
    }
    cache = tmp_path / "pool"
    argv = ["photo-pack", "lxqt-themes", "--cache", str(cache), "--shared-sources", str(shared)]
    assert fp.main(argv) == 0
    records = fp.read_manifest(cache / "manifest.jsonl")
    by_split = {r["split"]: r for r in records}
    assert len(records) == 2 and set(by_split) == {"train", "eval"}
    assert by_split["eval"]["package"] == "lxqt-themes"
    train = by_split["train"]
    assert train["original_path"] == "usr/share/backgrounds/a_by_Jane_Doe.jpg"
    assert train["author"] == "Jane Doe" and train["license"] == "GPL-2+" and train["version"] == "1.0-1"
    stored = cache / train["file"]
    assert stored.is_file() and fp.hashlib.sha256(stored.read_bytes()).hexdigest() == train["sha256_stored"]
    assert fp.hashlib.sha256(train_photo).hexdigest() == train["sha256_original"]
    with Image.open(stored) as im:
        assert im.format == "JPEG" and min(im.size) == 480  # no upscaling of a 640x480 original
    status = json.loads((cache / "packages.json").read_text())
    assert status["photo-pack"]["rejected"] == {"duplicate": 2, "flat-graphic": 1, "too-small": 1}

    def no_second_run(*_args):
        raise AssertionError("a finished package was processed again")

    monkeypatch.setattr(fp.Pool, "process", no_second_run)
    assert fp.main(argv) == 0


def test_pool_drops_a_training_copy_when_its_eval_original_arrives_later(fp, tmp_path, offline_packages):
    eval_photo = jpeg_bytes(photo_like(30))
    offline_packages["photo-pack"] = {"usr/share/backgrounds/same.jpg": eval_photo}
    offline_packages["visp-images-data"] = {"usr/share/visp-images-data/ViSP-images/same.jpg": eval_photo}
    cache = tmp_path / "pool"
    assert fp.main(["photo-pack", "--cache", str(cache), "--shared-sources", str(tmp_path / "none.json")]) == 0
    assert [r["split"] for r in fp.read_manifest(cache / "manifest.jsonl")] == ["train"]
    assert fp.main(["visp-images-data", "--cache", str(cache), "--shared-sources", str(tmp_path / "none.json")]) == 0
    records = fp.read_manifest(cache / "manifest.jsonl")
    assert [(r["package"], r["split"]) for r in records] == [("visp-images-data", "eval")]
    assert not list((cache / "images" / "photo-pack").glob("*.jpg"))


def test_main_refuses_a_cache_inside_the_repository(fp, capsys):
    with pytest.raises(SystemExit):
        fp.main(["--cache", str(SCRIPT.parents[1] / "pool-here")])
    assert "inside the repository" in capsys.readouterr().err


def test_main_reports_a_failed_download_and_continues(fp, tmp_path, monkeypatch, offline_packages):
    def download(spec, dest):
        raise fp.FetchError(f"apt-get download {spec.name} failed: E: Unable to locate package {spec.name}")

    monkeypatch.setattr(fp, "download", download)
    assert fp.main(["no-such-package", "--cache", str(tmp_path / "pool")]) == 1
    status = json.loads((tmp_path / "pool" / "packages.json").read_text())
    assert status["no-such-package"]["state"] == "failed" and "Unable to locate" in status["no-such-package"]["error"]


def test_parse_dep5_names_a_license_given_only_as_text(fp):
    text = "Format: x\n\nFiles: *\nCopyright: team\nLicense:\n Matplotlib only uses BSD compatible code.\n .\n More text.\n"
    stanzas, _ = fp.parse_dep5(text)
    assert stanzas[0].license == "custom: Matplotlib only uses BSD compatible code. . More text."


def test_sidecar_author_reads_kde_metadata_stellarium_credits_and_file_names(fp, tmp_path):
    kde = tmp_path / "usr/share/wallpapers/Kite"
    (kde / "contents/images").mkdir(parents=True)
    (kde / "metadata.json").write_text(json.dumps({"KPlugin": {"Authors": [{"Name": "Risto"}], "License": "LGPL-3"}}))
    assert fp.sidecar_author(tmp_path, "usr/share/wallpapers/Kite/contents/images/2560x1600.jpg") == ("Risto", "LGPL-3")
    neb = tmp_path / "nebulae"
    neb.mkdir()
    not_strict_json = ('{"subTiles": [\n {"imageCredits": {"short": "Jane"}, "imageUrl": "m1.png", "worldCoords": [[[1.5, -.25]]]},'
                       '\n {"imageCredits": {"Short": "DSS"}, "imageUrl": "m2.png"}]}')
    (neb / "textures.json").write_text(not_strict_json)
    assert fp.sidecar_author(tmp_path, "nebulae/m1.png") == ("Jane", None)
    assert fp.sidecar_author(tmp_path, "nebulae/m2.png") == ("DSS", None)
    assert fp.sidecar_author(tmp_path, "usr/share/backgrounds/Lake_by_John_Roe.jpg") == ("John Roe", None)
    assert fp.sidecar_author(tmp_path, "usr/share/backgrounds/lake.jpg") == (None, None)


def test_pool_leaves_out_images_whose_credit_is_excluded(fp, tmp_path, offline_packages, monkeypatch):
    textures = b'{"subTiles": [{"imageCredits": {"short": "DSS"}, "imageUrl": "a.jpg"},' \
               b' {"imageCredits": {"short": "Jane"}, "imageUrl": "b.jpg"}]}'
    offline_packages["sky-pack"] = {"neb/textures.json": textures, "neb/a.jpg": jpeg_bytes(photo_like(40)),
                                    "neb/b.jpg": jpeg_bytes(photo_like(41))}
    spec = fp.PackageSpec("sky-pack", category="astro", exclude_credits=("DSS",))
    monkeypatch.setattr(fp, "DEFAULT_PACKAGES", (spec,))
    cache = tmp_path / "pool"
    assert fp.main(["sky-pack", "--cache", str(cache), "--shared-sources", str(tmp_path / "none.json")]) == 0
    (record,) = fp.read_manifest(cache / "manifest.jsonl")
    assert record["author"] == "Jane" and record["category"] == "astro"
    assert json.loads((cache / "packages.json").read_text())["sky-pack"]["rejected"] == {"credit-excluded": 1}


# ----------------------------------------------------------------------------------------------------------------
# Debian suites: names, the signed archive index, dedup across suites and against the shared photos


@pytest.mark.parametrize(
    ("arg", "expected"),
    [("budgie-backgrounds", ("budgie-backgrounds", "bookworm")), ("trixie:budgie-backgrounds", ("budgie-backgrounds", "trixie")),
     ("pypi:scikit-image", ("pypi:scikit-image", "bookworm")), ("sid:lomiri-wallpapers-16.04", ("lomiri-wallpapers-16.04", "sid"))],
)
def test_parse_package_arg_reads_an_optional_suite(fp, arg, expected):
    assert fp.parse_package_arg(arg) == expected


def test_parse_package_arg_rejects_a_malformed_suite(fp):
    with pytest.raises(ValueError, match="SUITE:NAME"):
        fp.parse_package_arg("Trixie!:foo")


def test_package_spec_key_and_folder_keep_the_base_suite_unchanged(fp):
    assert (fp.PackageSpec("foo").key, fp.PackageSpec("foo").folder) == ("foo", "foo")
    trixie = fp.PackageSpec("foo", suite="trixie")
    assert (trixie.key, trixie.folder) == ("trixie:foo", "foo@trixie")
    assert fp.PackageSpec("pypi:scikit-image", suite="sid").key == "pypi:scikit-image"


def test_resolve_specs_moves_curated_rules_to_the_asked_suite_and_keeps_eval_packages_eval(fp):
    moved, curated, plain, evaluation = fp.resolve_specs(
        ["sid:mate-backgrounds", "trixie:budgie-backgrounds", "new-package", "sid:digikam-data"], default_suite="trixie")
    assert moved.suite == "sid" and moved.include == ("usr/share/backgrounds/mate/nature/*",)
    assert curated in fp.DEFAULT_PACKAGES and curated.exclude == ("*ocean-waves*",)
    assert (plain.suite, plain.include) == ("trixie", ("*",))
    assert evaluation.split == "eval" and evaluation.key == "sid:digikam-data"


def test_default_list_takes_every_reserved_package_as_eval_in_every_suite(fp):
    for spec in fp.DEFAULT_PACKAGES:
        assert (spec.split == "eval") == (spec.name in fp.RESERVED_EVAL)
    assert len({s.key for s in fp.DEFAULT_PACKAGES}) == len(fp.DEFAULT_PACKAGES)


RELEASE = """Origin: Debian
Codename: trixie
MD5Sum:
 0123 10 main/binary-amd64/Packages.xz
SHA256:
 {sha} {size} main/binary-amd64/Packages.xz
 ffff 99 main/Contents-all.gz
"""


def fake_archive(fp, monkeypatch, tmp_path, deb: bytes, served_deb: bytes | None = None, gpgv_rc: int = 0):
    """A DebianArchive whose HTTP and gpgv are replaced: one package, ``demo``, whose index lists ``deb``'s hash."""
    import hashlib
    import lzma
    import subprocess

    packages = (f"Package: demo\nVersion: 2.0-1\nArchitecture: all\nFilename: pool/main/d/demo/demo_2.0-1_all.deb\n"
                f"Size: {len(deb)}\nSHA256: {hashlib.sha256(deb).hexdigest()}\nDescription: x\n continued\n\n"
                "Package: other\nVersion: 1\nFilename: pool/main/o/other_1_all.deb\nSHA256: 00\n")
    packages_xz = lzma.compress(packages.encode())
    release = RELEASE.format(sha=hashlib.sha256(packages_xz).hexdigest(), size=len(packages_xz))
    served = {"http://mirror/dists/trixie/InRelease": b"signed",
              "http://mirror/dists/trixie/main/binary-amd64/Packages.xz": packages_xz,
              "http://mirror/pool/main/d/demo/demo_2.0-1_all.deb": deb if served_deb is None else served_deb}
    urls = []

    def http_get(url, into=None, tries=3):
        urls.append(url)
        if into is not None:
            into.write_bytes(served[url])
            return b""
        return served[url]

    def run(cmd, capture_output, check):
        assert cmd[0] == "gpgv" and "--keyring" in cmd
        return subprocess.CompletedProcess(cmd, gpgv_rc, stdout=release.encode(), stderr=b"gpgv: BAD signature")

    monkeypatch.setattr(fp, "_http_get", http_get)
    monkeypatch.setattr(fp.subprocess, "run", run)
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(b"keys")
    return fp.DebianArchive("trixie", mirror="http://mirror", keyring=keyring), urls


def test_parse_release_sha256_reads_only_the_sha256_section(fp):
    assert fp.parse_release_sha256(RELEASE.format(sha="ab", size=5)) == {
        "main/binary-amd64/Packages.xz": ("ab", 5), "main/Contents-all.gz": ("ffff", 99)}


def test_debian_archive_fetches_a_verified_package_and_reuses_it(fp, monkeypatch, tmp_path):
    archive, urls = fake_archive(fp, monkeypatch, tmp_path, b"deb bytes")
    assert archive.index()["demo"]["Version"] == "2.0-1"
    path = archive.fetch("demo", tmp_path / "dl")
    assert path.name == "demo_2.0-1_all.deb" and path.read_bytes() == b"deb bytes"
    assert archive.fetch("demo", tmp_path / "dl") == path
    assert sum(u.endswith(".deb") for u in urls) == 1  # the verified file on disk is reused
    with pytest.raises(fp.FetchError, match="not in Debian trixie"):
        archive.fetch("no-such-package", tmp_path / "dl")


def test_debian_archive_refuses_a_package_whose_hash_does_not_match(fp, monkeypatch, tmp_path):
    archive, _ = fake_archive(fp, monkeypatch, tmp_path, b"deb bytes", served_deb=b"tampered")
    (tmp_path / "dl").mkdir()
    with pytest.raises(fp.FetchError, match="SHA-256"):
        archive.fetch("demo", tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []


def test_debian_archive_refuses_an_index_whose_signature_does_not_verify(fp, monkeypatch, tmp_path):
    archive, _ = fake_archive(fp, monkeypatch, tmp_path, b"deb bytes", gpgv_rc=1)
    with pytest.raises(fp.FetchError, match="does not verify"):
        archive.index()


def test_square_phash_matches_the_same_picture_cut_to_another_aspect(fp):
    wide = Image.fromarray(photo_like(50, (1600, 900)))
    narrower = wide.crop((100, 0, 1500, 900)).resize((1120, 720), Image.LANCZOS)
    assert fp.hamming(fp.square_phash(wide), fp.square_phash(narrower)) <= 6
    assert fp.hamming(fp.square_phash(wide), fp.square_phash(Image.fromarray(photo_like(51, (1600, 900))))) > 12
    d = fp.Deduper(6)
    d.add("sha-a", fp.phash(wide), "images/a.jpg", fp.square_phash(wide))
    assert d.find("sha-b", fp.phash(narrower), fp.square_phash(narrower)) == "images/a.jpg"


def test_pool_keeps_one_copy_across_suites_and_forgets_per_suite(fp, tmp_path, offline_packages):
    photo, other = photo_like(60, (1200, 800)), photo_like(61)
    reencoded = jpeg_bytes(np.asarray(Image.fromarray(photo).resize((900, 600), Image.LANCZOS)), quality=80)
    offline_packages["walls"] = {"usr/share/backgrounds/lake.jpg": jpeg_bytes(photo)}
    offline_packages["walls@trixie"] = {"usr/share/backgrounds/lake.jpg": reencoded,
                                        "usr/share/backgrounds/new.jpg": jpeg_bytes(other)}
    cache = tmp_path / "pool"
    common = ["--cache", str(cache), "--shared-sources", str(tmp_path / "none.json")]
    assert fp.main(["walls", "trixie:walls", *common]) == 0
    records = fp.read_manifest(cache / "manifest.jsonl")
    assert sorted((r["suite"], r["original_path"]) for r in records) == [
        ("bookworm", "usr/share/backgrounds/lake.jpg"), ("trixie", "usr/share/backgrounds/new.jpg")]
    trixie = next(r for r in records if r["suite"] == "trixie")
    assert trixie["file"].startswith("images/walls@trixie/") and trixie["package"] == "walls"
    status = json.loads((cache / "packages.json").read_text())
    assert status["trixie:walls"]["rejected"] == {"duplicate": 1} and status["trixie:walls"]["suite"] == "trixie"
    assert fp.main(["trixie:walls", "--force", *common]) == 0  # processing one suite again leaves the other alone
    assert sorted(r["suite"] for r in fp.read_manifest(cache / "manifest.jsonl")) == ["bookworm", "trixie"]
    assert (cache / "images" / "walls").is_dir()
    assert "| walls | trixie | 1.0-1 | train | photo | 1 |" in fp.summary_table(json.loads((cache / "packages.json").read_text()))


def test_pool_drops_a_reencoded_copy_of_a_shared_photo(fp, tmp_path, offline_packages):
    original = Image.fromarray(photo_like(70, (1536, 1024)))
    shared_dir = tmp_path / "shared"
    shared_dir.mkdir()
    crop = fp.resize_short(original, 512, 2048)
    left = (crop.width - 512) // 2
    crop.crop((left, 0, left + 512, 512)).save(shared_dir / "photo_000.jpg", quality=95)
    (shared_dir / "sources.json").write_text(json.dumps([{"file": "photo_000.jpg", "original_sha256": "not-these-bytes"}]))
    offline_packages["walls@trixie"] = {"usr/share/backgrounds/lake.jpg": jpeg_bytes(np.asarray(original), quality=85)}
    cache = tmp_path / "pool"
    assert fp.main(["trixie:walls", "--cache", str(cache), "--shared-sources", str(shared_dir / "sources.json")]) == 0
    assert fp.read_manifest(cache / "manifest.jsonl") == []
    assert json.loads((cache / "packages.json").read_text())["trixie:walls"]["rejected"] == {"duplicate": 1}


def test_pool_leaves_out_images_whose_license_is_excluded(fp, tmp_path, offline_packages, monkeypatch):
    copyright_text = DEP5 + "\nFiles: images/land/city*\nCopyright: Various\nLicense: Unsplash\n"
    offline_packages["sky"] = {"usr/share/games/sky/images/land/city1.jpg": jpeg_bytes(photo_like(80)),
                               "usr/share/games/sky/images/land/beach1.jpg": jpeg_bytes(photo_like(81))}
    spec = fp.PackageSpec("sky", exclude_licenses=("Unsplash",))
    monkeypatch.setattr(fp, "DEFAULT_PACKAGES", (spec,))
    real_unpack = fp.unpack

    def unpack(archive, dest):
        real_unpack(archive, dest)
        (dest / "usr/share/doc/sky/copyright").write_text(copyright_text)

    monkeypatch.setattr(fp, "unpack", unpack)
    cache = tmp_path / "pool"
    assert fp.main(["sky", "--cache", str(cache), "--shared-sources", str(tmp_path / "none.json")]) == 0
    (record,) = fp.read_manifest(cache / "manifest.jsonl")
    assert record["original_path"].endswith("beach1.jpg") and record["license"] == "GPL-2+"
    assert json.loads((cache / "packages.json").read_text())["sky"]["rejected"] == {"license-excluded": 1}


def test_pool_fills_in_suite_and_square_hash_of_an_older_manifest(fp, tmp_path):
    cache = tmp_path / "pool"
    (cache / "images" / "old").mkdir(parents=True)
    Image.fromarray(photo_like(90)).save(cache / "images" / "old" / "a.jpg")
    old = {"file": "images/old/a.jpg", "sha256_original": "x", "phash": "00ff00ff00ff00ff", "package": "old", "source": "deb",
           "split": "train"}
    fp.write_manifest(cache / "manifest.jsonl", [old])
    (cache / "packages.json").write_text(json.dumps({"old": {"state": "done", "kept": 1}}))
    pool = fp.Pool(fp.PoolOptions(cache=cache, shared_sources=None))
    (record,) = pool.records
    assert record["suite"] == "bookworm" and len(record["phash_square"]) == 16
    assert pool.status["old"]["suite"] == "bookworm" and fp.record_key(record) == "old"
