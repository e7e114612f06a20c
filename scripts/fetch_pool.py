#!/usr/bin/env python3
"""Build a pool of openly licensed photographs for training from Debian packages and PyPI data packages.

Each Debian package is downloaded over HTTP from the Debian archive of its suite (bookworm unless the name
says ``SUITE:NAME``, e.g. ``trixie:budgie-backgrounds``), checked against the suite's signed index (gpgv with
the Debian archive keyring, then SHA-256 of the index and of the package), without touching the machine's apt
configuration; ``pypi:NAME`` is fetched with ``pip download --no-deps``. Each package is unpacked into a cache
folder outside the repository, searched for photographs (plain image files, and images
inside Qt resource bundles, Enlightenment .edj themes and .pk3/.zip archives), filtered (size, transparency,
flat graphics, text pages, duplicates), converted the way ../shared/data/photos/SOURCES.md describes (EXIF
orientation, ICC profile to sRGB, alpha flattened on white, RGB), resized so the short side is 512 px and saved
as JPEG. ``manifest.jsonl`` in the cache lists every stored image with its hashes, package, original path,
licence (from the package's DEP-5 copyright file, per file pattern), author where known and its ``split``.

The images of RESERVED_EVAL packages get ``split = "eval"`` and must never be used for training or tuning.

Usage: python scripts/fetch_pool.py [[SUITE:]PACKAGE | pypi:NAME ...] [--suite SUITE] [--cache DIR] [--force] [--list]
Needs: the standard library, Pillow, numpy, tqdm; gpgv, the debian-archive-keyring and dpkg-deb for Debian
packages, pip for PyPI ones.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import email.parser
import fnmatch
import functools
import hashlib
import io
import json
import lzma
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps
from tqdm import tqdm

Image.MAX_IMAGE_PIXELS = 400_000_000  # large wallpapers are legitimate; the default guard would reject 8K ones

RESERVED_EVAL = frozenset({"gcompris-qt-data", "lxqt-themes", "gimp-help-en", "visp-images-data", "digikam-data"})
DEFAULT_CACHE = Path("~/.cache/latentbridge/pool").expanduser()
DEFAULT_SHARED_SOURCES = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "sources.json"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".pgm", ".ppm", ".pnm", ".tga")
ARCHIVE_EXTS = (".zip", ".pk3")
# Paths that are almost never photographs: icons, thumbnails, UI previews, texture channels that are not colour.
DEFAULT_EXCLUDE = (
    "*/icons/*", "*/icon/*", "*/pixmaps/*", "*/cursors/*", "*/emotes/*", "*/emoticons/*", "*/flags/*",
    "*thumb*", "*screenshot*", "*preview*", "*logo*", "*splash*", "*favicon*",
    "*_nm.*", "*_norm*", "*_normal*", "*_gloss*", "*_spec*", "*_glow*", "*_bump*", "*_height*",
    "*_gm.*", "*_sm.*", "*_rm.*", "*_ao.*", "*_disp*", "*_rough*", "*_mask*",
)
SPLIT_TRAIN, SPLIT_EVAL = "train", "eval"
BASE_SUITE = "bookworm"  # the suite the pool was first built from: its packages keep their bare names and folders
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


@dataclasses.dataclass(frozen=True)
class PackageSpec:
    """One package to take photos from: ``include``/``exclude`` are globs on the original path (no leading /).

    ``name`` is the Debian package name (or ``pypi:NAME``); ``suite`` the Debian suite it comes from.
    """

    name: str
    suite: str = BASE_SUITE
    category: str = "photo"  # photo | astro | texture | scan: lets training pick or weight kinds of content
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    min_short: int | None = None  # overrides --min-short for packages whose photos are small but good
    license_hint: str = ""  # the package licence when its copyright file is not machine-readable (DEP-5)
    license_note: str = ""  # per-image terms the copyright file does not carry (a README beside the images)
    exclude_credits: tuple[str, ...] = ()  # globs on the image's credited author whose terms are doubtful
    exclude_licenses: tuple[str, ...] = ()  # globs on the per-file licence (DEP-5) of images to leave out
    note: str = ""

    @property
    def source(self) -> str:
        return "pypi" if self.name.startswith("pypi:") else "deb"

    @property
    def dist(self) -> str:
        return self.name.removeprefix("pypi:")

    @property
    def split(self) -> str:
        return split_for(self.name)

    @property
    def key(self) -> str:
        """The package's name in the pool: ``NAME`` for the base suite and PyPI, ``SUITE:NAME`` for other suites."""
        return package_key(self.name, None if self.source == "pypi" else self.suite)

    @property
    def folder(self) -> str:
        """Its folder under images/: ``NAME``, or ``NAME@SUITE`` outside the base suite."""
        name = _safe_name(self.dist)
        return name if self.source == "pypi" or self.suite == BASE_SUITE else f"{name}@{_safe_name(self.suite)}"


def package_key(name: str, suite: str | None) -> str:
    return name if suite in (None, BASE_SUITE) or name.startswith("pypi:") else f"{suite}:{name}"


def parse_package_arg(arg: str, default_suite: str = BASE_SUITE) -> tuple[str, str]:
    """(name, suite) of a command-line package: ``NAME``, ``SUITE:NAME`` or ``pypi:NAME`` (suite unused)."""
    if arg.startswith("pypi:") or ":" not in arg:
        return arg, default_suite
    suite, name = arg.split(":", 1)
    if not re.fullmatch(r"[a-z][a-z0-9-]*", suite) or not name:
        raise ValueError(f"{arg!r} is not NAME, SUITE:NAME or pypi:NAME (a suite is a Debian codename such as trixie)")
    return name, suite


def split_for(package: str) -> str:
    """``eval`` for the packages reserved for evaluation, ``train`` for every other."""
    return SPLIT_EVAL if package in RESERVED_EVAL else SPLIT_TRAIN


PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
                 "OneStandsOut", "Path", "summer_1am", "Volna")
GCOMPRIS_PAINTINGS = ("*Gogh*", "*Gauguin*", "*Bruegel*", "*Bosschaert*", "*PereTanguy*", "*lady_unicorn*", "*Eglise_dAuvers*")
UFOAI_DIRS = ("tex_buildings", "tex_nature", "tex_material", "tex_matt", "tex_misc", "tex_furniture", "tex_doors",
              "tex_trak", "tex_mattn", "tex_ctp1", "tex_base", "tex_street", "tex_farm", "tex_urban")

BOOKWORM_PACKAGES: tuple[PackageSpec, ...] = (
    # Reserved for evaluation: everything that passes the filters, split = eval.
    PackageSpec("gcompris-qt-data", include=("*.rcc:*",), exclude=GCOMPRIS_PAINTINGS, note="paintings left out"),
    PackageSpec("lxqt-themes", include=("usr/share/lxqt/wallpapers/*",), exclude=("*plasma*",)),
    PackageSpec("gimp-help-en", include=("usr/share/gimp/2.0/help/en/images/tutorials/*",
                                         "usr/share/gimp/2.0/help/en/images/filters/examples/*"), exclude=("*menu*", "*dialog*")),
    PackageSpec("visp-images-data", exclude=("*/warp/*", "*Gaussian-filter*", "*Klimt*", "*/mbt/cube/*[1-9].pgm",
                                             "*/mbt/cube/*[1-9]0.pgm"), note="one frame in 100 of the cube video"),
    PackageSpec("digikam-data", include=("usr/share/digikam/*", "usr/share/showfoto/*"), exclude=("*/lut3d/*", "*/themes/*"),
                license_hint="GPL-2+ (free-form copyright file)"),
    # Training: photographs first.
    PackageSpec("mate-backgrounds", include=("usr/share/backgrounds/mate/nature/*",)),
    PackageSpec("lomiri-wallpapers-16.04", include=("usr/share/backgrounds/*",)),
    PackageSpec("plasma-workspace-wallpapers", include=tuple(f"usr/share/wallpapers/{n}/contents/images*" for n in PLASMA_PHOTOS),
                note="only the photographic wallpapers; the others are digital art"),
    PackageSpec("palapeli-data", include=("usr/share/palapeli/collection/*",)),
    PackageSpec("enlightenment-data", include=("usr/share/enlightenment/data/backgrounds/*.edj:*",),
                exclude=("*Squiggle*", "*Flat-*", "*Paper-Flower*"), note="largest JPEG inside each .edj background"),
    PackageSpec("sddm-theme-maldives", include=("*/background.jpg",)),
    PackageSpec("scratch", include=("usr/share/scratch/Media/Backgrounds/*",), min_short=360,
                note="480x360 photographs, kept at their size"),
    PackageSpec("tuxpaint-data", include=("usr/share/tuxpaint/templates/*",), exclude=("*rainbow*",),
                note="photographs; rainbow_gradient (newer versions) is synthetic"),
    PackageSpec("scribus-template", include=("usr/share/scribus/templates/*.jpg",),
                license_hint="public-domain (templates by Riku Leino) or GPL-2+ (free-form copyright file)"),
    PackageSpec("libjxl-testdata", include=("usr/share/libjxl-testdata/*",),
                exclude=("*sRGB*", "*P3*", "*R2020*", "*rgb-to-gbr*", "*pq_gradient*", "*.webp", "*flower_*")),
    PackageSpec("python3-skimage", include=("usr/lib/python3/dist-packages/skimage/data/*",), exclude=("*/color.png",),
                min_short=256, note="chelsea and coins are 300 px photographs; color.png is synthetic",
                license_note="per-image sources and terms in skimage/data/README.txt"),
    PackageSpec("python3-sklearn", include=("usr/lib/python3/dist-packages/sklearn/datasets/images/*",),
                license_note="CC-BY-2.0 per sklearn/datasets/images/README.txt (Flickr: danielbuechele, vultilion)"),
    PackageSpec("python-matplotlib-data", include=("usr/share/matplotlib/mpl-data/sample_data/*",)),
    PackageSpec("mrpt-common", include=("usr/share/mrpt/datasets/*",)),
    PackageSpec("pypi:scikit-image", include=("skimage/data/*",), exclude=("*/color.png",), min_short=256,
                note="bundled data, mostly the same as python3-skimage",
                license_note="per-image sources and terms in skimage/data/README.txt"),
    # Astronomical photographs (telescope images; dark backgrounds).
    PackageSpec("stellarium-data", category="astro", include=("usr/share/stellarium/nebulae/*",), min_short=256,
                exclude_credits=("DSS", "*Digitized Sky Survey*"),
                license_note="credited per image in textures.json and the README's section 4 (free with credit)",
                note="Digitized Sky Survey images left out: their terms restrict use"),
    # Photographic textures (surfaces photographed for a game): real camera content, tileable crops.
    PackageSpec("ufoai-textures", category="texture", include=tuple(f"*.pk3:textures/{d}/*" for d in UFOAI_DIRS),
                exclude=("*/art0*",), note="photographed surfaces; paintings left out"),
    PackageSpec("mypaint-data-extras", category="scan", include=("usr/share/mypaint/backgrounds/*",),
                note="scanned paper textures"),
)


def _in_suite(suite: str, names: tuple[str, ...]) -> tuple[PackageSpec, ...]:
    """The bookworm rules of ``names``, for the same packages in ``suite``."""
    by_name = {s.name: s for s in BOOKWORM_PACKAGES}
    return tuple(dataclasses.replace(by_name[n], suite=suite) for n in names)


# Newer Debian suites: the evaluation packages again (their new images stay out of training), the bookworm
# packages whose newer versions may hold new pictures (duplicates of bookworm's are dropped), and new packages.
DEFAULT_PACKAGES: tuple[PackageSpec, ...] = BOOKWORM_PACKAGES + _in_suite("trixie", (
    "gcompris-qt-data", "lxqt-themes", "visp-images-data", "tuxpaint-data", "enlightenment-data", "lomiri-wallpapers-16.04",
    "scribus-template", "libjxl-testdata", "stellarium-data")) + (
    PackageSpec("gimp-help-en", suite="trixie", include=("usr/share/gimp/3.0/help/en/images/tutorials/*",
                                                         "usr/share/gimp/3.0/help/en/images/filters/examples/*"),
                exclude=("*menu*", "*dialog*")),
    PackageSpec("digikam-data", suite="trixie", include=("usr/share/digikam/*", "usr/share/showfoto/*"),
                exclude=("*/lut3d/*", "*/themes/*", "*/marble/*"), license_hint="GPL-2+ (free-form copyright file)",
                note="map tiles left out"),
    PackageSpec("budgie-backgrounds", suite="trixie", include=("usr/share/backgrounds/budgie/*",), exclude=("*ocean-waves*",),
                note="photographs; ocean-waves is a painting"),
    PackageSpec("endless-sky-data", suite="sid", include=("usr/share/games/endless-sky/images/land/*",), exclude=("*.png",),
                min_short=360, exclude_licenses=("Unsplash",),
                license_note="per-file sources in the copyright file; 'public-domain' ones come from morguefile.com",
                note="720x360 landscape photographs, kept at their size; renders (PNG) and Unsplash-licensed files left out"),
    PackageSpec("gramps", suite="trixie", include=("usr/share/doc/gramps/example/gramps/*",), min_short=256,
                note="portraits of the example family tree (Wikimedia Commons originals)"),
    PackageSpec("psychtoolbox-3-common", suite="trixie", include=("usr/share/psychtoolbox-3/PsychDemos/*.jpg",),
                exclude=("*blur*", "*/img2.jpg"), min_short=256, note="stimulus photographs of the demos"),
    PackageSpec("kalzium-data", suite="trixie", include=("usr/share/kalzium/data/toolpics/*",), min_short=256,
                note="photographs of laboratory tools, about 300 px"),
    PackageSpec("reform-tools", suite="trixie", include=("usr/share/backgrounds/reform-mountains.jpg",)),
    PackageSpec("mate-screensaver-common", suite="trixie", category="astro", include=("usr/share/backgrounds/cosmos/*",),
                license_note="NASA/ESA space images (public domain) per the upstream screensaver credits",
                note="Earth from orbit, planets, nebulae, galaxies"),
    PackageSpec("libreoffice-common", suite="trixie", category="texture",
                include=("usr/lib/libreoffice/share/gallery/backgrounds/*",),
                exclude=("*circuit*", "*cloud*", "*tiger*", "*tiles*"), note="photographed surfaces; drawn ones left out"),
)


# ----------------------------------------------------------------------------------------------------------------
# Licences: Debian machine-readable copyright files (DEP-5)


@dataclasses.dataclass(frozen=True)
class CopyrightStanza:
    files: tuple[str, ...]
    copyright: str
    license: str


def parse_dep5(text: str) -> tuple[list[CopyrightStanza], str | None]:
    """Parse a DEP-5 copyright file into its Files stanzas (in order) and the header's licence, if any.

    Returns ``([], None)`` for free-form copyright files, which the caller then describes as such.
    """
    paragraphs, current = [], []
    for line in text.splitlines():
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    stanzas, header_license = [], None
    for i, para in enumerate(paragraphs):
        fields = _dep5_fields(para)
        if i == 0 and "format" not in fields:
            return [], None
        if "files" in fields:
            lic = _license_name(fields.get("license", ""))
            stanzas.append(CopyrightStanza(tuple(fields["files"].split()), _one_line(fields.get("copyright", "")), lic))
        elif i == 0 and "license" in fields:
            header_license = _license_name(fields["license"])
    return stanzas, header_license


def _dep5_fields(lines: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in lines:
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


def _license_name(value: str) -> str:
    """The short name on a License field's first line; a licence given only as text becomes ``custom: <its start>``."""
    first, _, rest = value.partition("\n")
    if first.strip() or not rest.strip():
        return first.strip()
    return "custom: " + " ".join(rest.split())[:70]


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in text.split("\n") if part.strip() and part.strip() != ".")


@functools.lru_cache(maxsize=65536)
def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    """DEP-5 globs: ``*`` matches any characters including ``/``, ``?`` one character."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts) + r"\Z")


def dep5_pattern_matches(pattern: str, path: str) -> bool:
    """Whether a Files pattern (a source-tree path) names an installed file.

    Source and installed layouts differ, so a pattern also matches the end of the installed path at a folder
    boundary, and may drop leading folders as long as what is left keeps a literal first folder and a literal
    file name (``backgrounds/nature/Aqua.jpg`` finds ``usr/share/backgrounds/mate/nature/Aqua.jpg``, while
    ``debian/*`` or ``src/x/resource/*`` never widen into ``*`` or ``resource/*``).
    """
    path = path.lstrip("/")
    parts = pattern.split("/")
    for start in range(max(1, len(parts) - 1)):
        tail = parts[start:]
        if start and (len(tail) < 2 or _is_wild(tail[0]) or _is_wild(tail[-1])):
            break
        rx = _glob_to_regex("/".join(tail))
        if rx.match(path) or any(rx.match(path[m.end():]) for m in re.finditer("/", path)):
            return True
    return False


def _is_wild(part: str) -> bool:
    return set(part) <= {"*", "?"}


def license_for(stanzas: list[CopyrightStanza], path: str, fallback: str) -> tuple[str, str | None]:
    """(licence, copyright holder of a file-specific stanza) for ``path``: the last matching stanza wins (DEP-5)."""
    found = None
    for stanza in stanzas:
        if any(dep5_pattern_matches(p, path) for p in stanza.files):
            found = stanza
    if found is None:
        return fallback, None
    specific = found.files != ("*",)
    return found.license or fallback, (found.copyright or None) if specific else None


def package_license(stanzas: list[CopyrightStanza], header_license: str | None) -> str:
    """The licence of the package as a whole: its ``Files: *`` stanza, else the header, else the first stanza."""
    for stanza in stanzas:
        if "*" in stanza.files:
            return stanza.license
    if header_license:
        return header_license
    return stanzas[0].license if stanzas else "see copyright file (not machine-readable)"


# ----------------------------------------------------------------------------------------------------------------
# Finding images: plain files and images inside containers


@dataclasses.dataclass(frozen=True)
class Member:
    """An image candidate: its original path as the manifest shows it, the path used to look up its licence, a reader."""

    path: str
    license_path: str
    read: Callable[[], bytes]


def iter_members(root: Path) -> Iterator[Member]:
    """Every image file under ``root``, and every image inside .rcc, .edj, .pk3 and .zip files there."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if full.is_symlink() or not full.is_file():
                continue
            rel = full.relative_to(root).as_posix()
            lower = name.lower()
            if lower.endswith(IMAGE_EXTS):
                yield Member(rel, rel, full.read_bytes)
            elif lower.endswith(".rcc"):
                yield from _rcc_members(full, rel)
            elif lower.endswith(".edj"):
                yield from _edj_members(full, rel)
            elif lower.endswith(ARCHIVE_EXTS):
                yield from _zip_members(full, rel)


def _zip_members(full: Path, rel: str) -> Iterator[Member]:
    try:
        with zipfile.ZipFile(full) as zf:
            names = sorted(n for n in zf.namelist() if n.lower().endswith(IMAGE_EXTS))
    except zipfile.BadZipFile:
        return
    folder = rel.rsplit("/", 1)[0] if "/" in rel else ""
    for name in names:
        yield Member(f"{rel}:{name}", f"{folder}/{name}", lambda n=name: _zip_read(full, n))


def _zip_read(full: Path, name: str) -> bytes:
    with zipfile.ZipFile(full) as zf:
        return zf.read(name)


def _edj_members(full: Path, rel: str) -> Iterator[Member]:
    """An Enlightenment .edj stores a background as JPEG streams at several sizes: yield the largest one."""
    data = full.read_bytes()
    best, best_area = None, 0
    for m in re.finditer(b"\xff\xd8\xff(?=[\xc0-\xc4\xdb\xdd\xe0-\xef\xfe])", data):  # SOI, then a real marker
        end = data.find(b"\xff\xd9", m.start())
        if end < 0:
            continue
        blob = data[m.start():end + 2]
        try:
            with Image.open(io.BytesIO(blob)) as im:
                area = im.width * im.height
        except (OSError, ValueError):
            continue
        if area > best_area:
            best, best_area = (m.start(), blob), area
    if best is not None:
        offset, blob = best
        yield Member(f"{rel}:jpeg@{offset}", rel, lambda b=blob: b)


def parse_rcc(data: bytes) -> dict[str, bytes]:
    """Files in a compiled Qt resource bundle (.rcc, format versions 1-3), by resource path; zstd entries are skipped."""
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource file (no 'qres' magic)")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    node_size = 14 if version < 2 else 22
    out: dict[str, bytes] = {}

    def name_at(offset: int) -> str:
        length = struct.unpack(">H", data[names + offset:names + offset + 2])[0]
        start = names + offset + 6
        return data[start:start + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> None:
        base = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", data[base:base + 6])
        name = name_at(name_offset) if index else ""
        path = f"{prefix}/{name}" if index else ""
        if flags & 0x02:  # directory
            count, first = struct.unpack(">II", data[base + 6:base + 14])
            for child in range(first, first + count):
                walk(child, path)
            return
        offset = struct.unpack(">I", data[base + 10:base + 14])[0]
        size = struct.unpack(">I", data[payload + offset:payload + offset + 4])[0]
        blob = data[payload + offset + 4:payload + offset + 4 + size]
        if flags & 0x04:  # zstd: not in the standard library
            return
        if flags & 0x01:  # qCompress: 4-byte big-endian length, then zlib
            blob = zlib.decompress(blob[4:])
        out[path] = blob

    walk(0, "")
    return out


def _rcc_members(full: Path, rel: str) -> Iterator[Member]:
    try:
        files = parse_rcc(full.read_bytes())
    except (ValueError, struct.error, zlib.error):
        return
    for path in sorted(files):
        if path.lower().endswith(IMAGE_EXTS):  # resource paths mirror the source tree, which DEP-5 patterns name
            yield Member(f"{rel}:{path}", path.lstrip("/"), lambda b=files[path]: b)


def path_selected(path: str, spec: PackageSpec) -> bool:
    """Whether ``path`` (the member's original path) passes the package's include globs and all exclude globs."""
    lower = path.lower()
    if not any(fnmatch.fnmatchcase(path, pattern) for pattern in spec.include):
        return False
    return not any(fnmatch.fnmatchcase(lower, pattern.lower()) for pattern in (*DEFAULT_EXCLUDE, *spec.exclude))


# ----------------------------------------------------------------------------------------------------------------
# Photo heuristics


@dataclasses.dataclass(frozen=True)
class Features:
    flat: float  # share of non-clipped pixels whose 3x3 neighbourhood is exactly one colour (graphics, UI, text)
    clipped: float  # share of pixels at pure black or white (page backgrounds, line art, empty frames)
    colours: int  # distinct 4-bit-per-channel colours in a 64x64 thumbnail
    grayscale: bool


def image_features(rgb: np.ndarray) -> Features:
    """Cheap statistics of an RGB uint8 image (H, W, 3) that separate photographs from graphics."""
    h, w = rgb.shape[:2]
    side = min(h, w, 512)
    top, left = (h - side) // 2, (w - side) // 2
    crop = rgb[top:top + side, left:left + side].astype(np.int16)
    lum = crop.mean(-1)
    valid = (lum > 3) & (lum < 252)
    clipped = float(1.0 - valid.mean())
    if side >= 3 and valid.mean() > 0.05:
        pad = np.pad(crop, ((1, 1), (1, 1), (0, 0)), mode="edge")
        shifted = [pad[i:i + side, j:j + side] for i in range(3) for j in range(3)]
        spread = (np.max(shifted, axis=0) - np.min(shifted, axis=0)).max(-1)
        flat = float(((spread == 0) & valid).sum() / valid.sum())
    else:
        flat = 1.0
    small = np.asarray(Image.fromarray(rgb).resize((64, 64), Image.BOX))
    thumb = small >> 4
    codes = (thumb[..., 0].astype(np.int32) << 8) | (thumb[..., 1].astype(np.int32) << 4) | thumb[..., 2]
    chroma = float((small.max(-1).astype(np.int16) - small.min(-1)).mean())
    return Features(flat=flat, clipped=clipped, colours=len(np.unique(codes)), grayscale=chroma < 3.0)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    min_short: int = 384  # smaller originals are icons, UI parts or thumbnails
    max_transparent: float = 0.02  # cut-outs on transparency are objects, not scenes
    max_flat: float = 0.2  # photographs have noise: exactly flat 3x3 patches mean drawn or rendered graphics
    max_flat_gray: float = 0.4  # one channel flattens more easily: smooth grayscale camera frames reach 0.3
    blank_clipped: float = 0.5  # mostly pure black/white ...
    blank_colours: int = 40  # ... with few colours: text pages, line art, empty frames
    min_colours: int = 20  # a colour image with fewer distinct colours ...
    few_colours_flat: float = 0.02  # ... and some exactly flat patches is a flat illustration (noisy ones are photos)


def reject_reason(size: tuple[int, int], transparent: float, feats: Features | None, t: Thresholds) -> str | None:
    """Why an image is not a usable photograph (a short tag), or None to keep it; ``feats`` may be None when only
    the size and transparency are known yet."""
    if min(size) < t.min_short:
        return "too-small"
    if transparent > t.max_transparent:
        return "transparent"
    if feats is None:
        return None
    if feats.flat > (t.max_flat_gray if feats.grayscale else t.max_flat):
        return "flat-graphic"
    if feats.clipped > t.blank_clipped and feats.colours < t.blank_colours:
        return "text-or-line-art"
    if not feats.grayscale and feats.colours < t.min_colours and feats.flat > t.few_colours_flat:
        return "few-colours"
    return None


# ----------------------------------------------------------------------------------------------------------------
# Conversion and hashing

_SRGB = ImageCms.createProfile("sRGB")


def to_srgb(im: Image.Image) -> tuple[Image.Image, float]:
    """EXIF orientation, ICC profile to sRGB, alpha flattened on white, RGB; returns (image, transparent share)."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(arr / max(arr.max(), 1.0) * 255.0, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        lo, hi = float(arr.min()), float(arr.max())
        im = Image.fromarray(((arr - lo) / max(hi - lo, 1e-12) * 255.0).astype(np.uint8), "L")
    icc = im.info.get("icc_profile")
    if im.mode == "P":
        im = im.convert("RGBA")
    if icc and im.mode in ("RGB", "RGBA", "CMYK"):
        with contextlib.suppress(ImageCms.PyCMSError, OSError):
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if im.mode == "RGBA":
                rgb, alpha = im.convert("RGB"), im.getchannel("A")
                rgb = ImageCms.profileToProfile(rgb, src, _SRGB, outputMode="RGB")
                im = Image.merge("RGBA", (*rgb.split(), alpha))
            else:
                im = ImageCms.profileToProfile(im, src, _SRGB, outputMode="RGB")
    transparent = 0.0
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        im = im.convert("RGBA")
        alpha = np.asarray(im.getchannel("A"))
        transparent = float((alpha < 250).mean())
        flat = Image.new("RGB", im.size, (255, 255, 255))
        flat.paste(im, mask=im.getchannel("A"))
        im = flat
    return im.convert("RGB"), transparent


def resize_short(im: Image.Image, short: int, max_side: int) -> Image.Image:
    """Lanczos-downscale so the short side is ``short`` (never upscale) and the long side at most ``max_side``."""
    scale = min(short / min(im.size), max_side / max(im.size), 1.0)
    if scale >= 1.0:
        return im
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.LANCZOS, reducing_gap=3.0)


def phash(im: Image.Image) -> int:
    """64-bit DCT perceptual hash: near-identical pictures (rescaled, recompressed) differ in few bits."""
    g = np.asarray(im.convert("L").resize((32, 32), Image.LANCZOS), dtype=np.float64)
    n = np.arange(32)
    dct = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / 64.0)
    coeffs = (dct @ g @ dct.T)[:8, :8].flatten()
    bits = coeffs[1:] > np.median(coeffs[1:])
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def square_phash(im: Image.Image) -> int:
    """Perceptual hash of the centred square crop: the same picture cut to another aspect ratio (a wallpaper at
    16:9 and 16:10, or one of the shared photos, which are centre crops) still matches."""
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    return phash(im.crop((left, top, left + side, top + side)))


class Deduper:
    """Exact (sha256 of the original) and near-duplicate detection across the whole pool: perceptual hashes of
    the whole picture and of its centred square crop, each matched against the same kind."""

    def __init__(self, max_distance: int = 6) -> None:
        self.max_distance = max_distance
        self.sha: dict[str, str] = {}  # original sha256 -> owner (pool file or "shared:<file>")
        self.owners: list[str] = []
        self._hashes: list[tuple[int | None, int | None]] = []  # (whole, square) per owner
        self._arrays: tuple[np.ndarray, ...] | None = None

    def add(self, sha: str | None, ph: int | None, owner: str, square: int | None = None) -> None:
        if sha:
            self.sha.setdefault(sha, owner)
        if ph is not None or square is not None:
            self.owners.append(owner)
            self._hashes.append((ph, square))
            self._arrays = None

    def find(self, sha: str, ph: int | None, square: int | None = None) -> str | None:
        """The owner this image duplicates, or None."""
        if sha in self.sha:
            return self.sha[sha]
        if not self.owners or (ph is None and square is None):
            return None
        if self._arrays is None:
            whole = np.array([h if h is not None else 0 for h, _ in self._hashes], dtype=np.uint64)
            sq = np.array([q if q is not None else 0 for _, q in self._hashes], dtype=np.uint64)
            self._arrays = (whole, np.array([h is not None for h, _ in self._hashes]),
                            sq, np.array([q is not None for _, q in self._hashes]))
        whole, has_whole, sq, has_sq = self._arrays
        near = np.zeros(len(self.owners), dtype=bool)
        if ph is not None:
            near |= has_whole & (np.bitwise_count(whole ^ np.uint64(ph)) <= self.max_distance)
        if square is not None:
            near |= has_sq & (np.bitwise_count(sq ^ np.uint64(square)) <= self.max_distance)
        hits = np.flatnonzero(near)
        return self.owners[hits[0]] if len(hits) else None

    def remove(self, owner: str) -> None:
        self.sha = {k: v for k, v in self.sha.items() if v != owner}
        keep = [i for i, o in enumerate(self.owners) if o != owner]
        self.owners = [self.owners[i] for i in keep]
        self._hashes = [self._hashes[i] for i in keep]
        self._arrays = None


# ----------------------------------------------------------------------------------------------------------------
# Manifest and state files


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_manifest(path: Path, records: Iterable[dict]) -> None:
    """JSON lines, one stored image per line, sorted by pool file."""
    rows = sorted(records, key=lambda r: r["file"])
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))


def read_manifest(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------------------------
# Downloading and unpacking


class FetchError(RuntimeError):
    """A package could not be downloaded or unpacked; the message says what to try."""


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise FetchError(f"{cmd[0]} is not installed: it is needed to fetch {cmd[-1]}") from e
    if res.returncode != 0:
        last = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise FetchError(f"{' '.join(cmd)} failed: {last[0]}")


def download(spec: PackageSpec, dest: Path) -> Path:
    """Fetch the package file into ``dest`` (reusing one already there) and return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    if spec.source == "deb":
        return debian_archive(spec.suite).fetch(spec.name, dest)
    found = _downloaded(spec, dest)
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), spec.dist]
        try:
            _run(cmd, dest)
        except FetchError as e:
            raise FetchError(f"{e}; check the name with `pip index versions {spec.dist}`") from None
        found = _downloaded(spec, dest)
    if not found:
        raise FetchError(f"downloading {spec.name} left no package file in {dest}")
    return found[-1]


def _downloaded(spec: PackageSpec, dest: Path) -> list[Path]:
    norm = _normalise_dist(spec.dist) + "_"
    return sorted(p for p in dest.iterdir()
                  if _normalise_dist(p.name).startswith(norm) and p.name.endswith((".whl", ".tar.gz", ".zip")))


class DebianArchive:
    """One suite of the Debian archive over plain HTTP, trusted the way apt trusts it: the signature of
    ``InRelease`` (gpgv with the Debian archive keyring), the SHA-256 it lists for ``Packages.xz``, and the
    SHA-256 that lists for each ``.deb``. Nothing of the machine's apt configuration is read or changed."""

    def __init__(self, suite: str, mirror: str = DEBIAN_MIRROR, arch: str = "amd64", components: tuple[str, ...] = ("main",),
                 keyring: Path = DEBIAN_KEYRING) -> None:
        self.suite, self.mirror, self.arch, self.components, self.keyring = suite, mirror.rstrip("/"), arch, components, keyring
        self._index: dict[str, dict[str, str]] | None = None

    def index(self) -> dict[str, dict[str, str]]:
        """Package name -> its Packages stanza (Version, Filename, SHA256, Size, ...), read once per run."""
        if self._index is None:
            release = self._verified_release()
            self._index = {}
            for component in self.components:  # binary-ARCH lists the Architecture: all packages too
                rel = f"{component}/binary-{self.arch}/Packages.xz"
                if rel not in release:
                    raise FetchError(f"{self.suite} has no {rel}: check the suite and --arch")
                sha, size = release[rel]
                data = _http_get(f"{self.mirror}/dists/{self.suite}/{rel}")
                if hashlib.sha256(data).hexdigest() != sha or len(data) != size:
                    raise FetchError(f"{self.mirror}/dists/{self.suite}/{rel} does not match the signed InRelease "
                                     "(the mirror is being updated): try again later")
                self._index.update(parse_packages(lzma.decompress(data).decode("utf-8", errors="replace")))
        return self._index

    def _verified_release(self) -> dict[str, tuple[str, int]]:
        """The SHA256 section of the suite's InRelease, after checking its signature: {path: (sha256, size)}."""
        try:
            signed = _http_get(f"{self.mirror}/dists/{self.suite}/InRelease")
        except FetchError as e:
            raise FetchError(f"{e}: is {self.suite!r} a Debian suite (bookworm, trixie, sid)?") from None
        if not self.keyring.is_file():
            raise FetchError(f"{self.keyring} is missing: install it with `apt-get install debian-archive-keyring`")
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "InRelease"
            src.write_bytes(signed)
            try:
                res = subprocess.run(["gpgv", "--keyring", str(self.keyring), "--output", "-", str(src)],
                                     capture_output=True, check=False)
            except FileNotFoundError as e:
                raise FetchError("gpgv is not installed: install it with `apt-get install gpgv`") from e
        if res.returncode != 0:
            last = res.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise FetchError(f"the signature of {self.suite}'s InRelease does not verify with {self.keyring}: {last[0]}")
        return parse_release_sha256(res.stdout.decode("utf-8", errors="replace"))

    def fetch(self, name: str, dest: Path) -> Path:
        """Download ``name``'s .deb into ``dest`` (reusing a verified one there); returns its path."""
        entry = self.index().get(name)
        if entry is None:
            raise FetchError(f"{name} is not in Debian {self.suite} ({', '.join(self.components)}): check the name, "
                             "or ask another suite with SUITE:NAME (bookworm, trixie, sid)")
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / Path(entry["Filename"]).name
        if target.is_file() and _sha256_file(target) == entry["SHA256"]:
            return target
        tmp = target.with_name(f".{target.name}.partial")
        try:
            _http_get(f"{self.mirror}/{entry['Filename']}", into=tmp)
            if _sha256_file(tmp) != entry["SHA256"]:
                raise FetchError(f"{entry['Filename']} does not match the SHA-256 of {self.suite}'s index: try again later")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target


_ARCHIVES: dict[str, DebianArchive] = {}


def debian_archive(suite: str) -> DebianArchive:
    """The (per-run cached) archive client of ``suite``."""
    if suite not in _ARCHIVES:
        _ARCHIVES[suite] = DebianArchive(suite)
    return _ARCHIVES[suite]


def parse_packages(text: str) -> dict[str, dict[str, str]]:
    """Stanzas of a Debian Packages file by package name (single-line fields only; the last stanza of a name wins)."""
    out: dict[str, dict[str, str]] = {}
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Package" in fields and "Filename" in fields:
            out[fields["Package"]] = fields
    return out


def parse_release_sha256(text: str) -> dict[str, tuple[str, int]]:
    """The ``SHA256:`` section of a Release file: {path: (sha256, size)}."""
    out: dict[str, tuple[str, int]] = {}
    inside = False
    for line in text.splitlines():
        if not line.startswith(" "):
            inside = line.strip() == "SHA256:"
            continue
        parts = line.split()
        if inside and len(parts) == 3:
            out[parts[2]] = (parts[0], int(parts[1]))
    return out


def _http_get(url: str, into: Path | None = None, tries: int = 3) -> bytes:
    """GET ``url`` into memory, or streamed into the file ``into`` (then b"" is returned), retrying transient
    failures; a FetchError names the URL."""
    for attempt in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=120) as response:
                if into is None:
                    return response.read()
                with into.open("wb") as f:
                    shutil.copyfileobj(response, f, 1 << 20)
                return b""
        except urllib.error.HTTPError as e:
            if e.code == 404 or attempt == tries - 1:
                raise FetchError(f"{url}: HTTP {e.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            if attempt == tries - 1:
                raise FetchError(f"{url}: {e} (is the Debian archive reachable?)") from None
        time.sleep(2.0 * (attempt + 1))
    raise AssertionError("unreachable")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _normalise_dist(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def unpack(archive: Path, dest: Path) -> None:
    """Extract a .deb (dpkg-deb), wheel or sdist into ``dest`` (emptied first)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    name = archive.name
    if name.endswith(".deb"):
        _run(["dpkg-deb", "-x", str(archive), str(dest)], dest)
    elif name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            _safe_extract_zip(zf, dest)
    elif name.endswith(".tar.gz"):
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    else:
        raise FetchError(f"do not know how to unpack {archive}")


def _safe_extract_zip(zf: zipfile.ZipFile, dest: Path) -> None:
    root = dest.resolve()
    for info in zf.infolist():
        target = (dest / info.filename).resolve()
        if not target.is_relative_to(root):
            raise FetchError(f"{info.filename} would be written outside {dest}: refusing to unpack")
    zf.extractall(dest)


def deb_copyright(name: str, root: Path, downloads: Path, suite: str = BASE_SUITE) -> str:
    """The text of usr/share/doc/NAME/copyright; where that folder is a link to another package's (``-common``
    packages), that package is fetched to read it. Empty when there is none."""
    doc = root / "usr" / "share" / "doc" / name
    if (doc / "copyright").is_file():
        return (doc / "copyright").read_text(encoding="utf-8", errors="replace")
    if not doc.is_symlink():
        return ""
    other = Path(os.readlink(doc)).name
    archive = download(PackageSpec(other, suite=suite), downloads)
    with tempfile.TemporaryDirectory() as tmp:
        _run(["dpkg-deb", "-x", str(archive), tmp], Path(tmp))
        archive.unlink(missing_ok=True)
        path = Path(tmp) / "usr" / "share" / "doc" / other / "copyright"
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def deb_version(archive: Path) -> str:
    res = subprocess.run(["dpkg-deb", "-f", str(archive), "Version"], capture_output=True, text=True, check=False)
    return res.stdout.strip() or archive.name.split("_")[1]


def package_metadata(spec: PackageSpec, archive: Path, root: Path) -> tuple[str, list[CopyrightStanza], str]:
    """(version, DEP-5 stanzas, package licence) read from the unpacked package."""
    if spec.source == "deb":
        stanzas, header = parse_dep5(deb_copyright(spec.name, root, archive.parent, spec.suite))
        if not stanzas and not header and spec.license_hint:
            return deb_version(archive), [], spec.license_hint
        return deb_version(archive), stanzas, package_license(stanzas, header)
    meta_files = sorted(root.glob("*.dist-info/METADATA")) or sorted(root.glob("*/PKG-INFO"))
    meta = email.parser.Parser().parsestr(meta_files[0].read_text(encoding="utf-8", errors="replace")) if meta_files else {}
    version = meta.get("Version") or archive.name.split("-")[1]
    lic = meta.get("License-Expression") or ""
    if not lic or len(lic) > 80:
        classifiers = [c.split("::")[-1].strip() for c in (meta.get_all("Classifier") or []) if c.startswith("License ::")]
        lic = "; ".join(classifiers) or (meta.get("License") or "")[:80] or "see package metadata"
    return version, [], lic


def sidecar_author(root: Path, rel: str) -> tuple[str | None, str | None]:
    """(author, licence) from metadata beside the image where a package keeps it: KDE wallpaper metadata.json,
    Stellarium's textures.json, or a ``Name_by_Author.jpg`` file name."""
    parts = rel.split(":")[0].split("/")
    for depth in range(1, min(len(parts), 4)):
        meta = root.joinpath(*parts[:-depth], "metadata.json")
        if meta.is_file():
            with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                plugin = json.loads(meta.read_text(encoding="utf-8"))["KPlugin"]
                return plugin["Authors"][0]["Name"], plugin.get("License")
    stellarium = root.joinpath(*parts[:-1], "textures.json")  # Stellarium nebula images: credits per image
    if stellarium.is_file():  # not strict JSON (numbers like -.5), so read the credit beside each image name
        text = stellarium.read_text(encoding="utf-8", errors="replace")
        for block in re.finditer(r"\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}", text):
            if re.search(r'"imageUrl"\s*:\s*"' + re.escape(parts[-1]) + '"', block.group(0)):
                credit = re.search(r'"short"\s*:\s*"([^"]*)"', block.group(0), flags=re.IGNORECASE)
                return (credit.group(1) if credit else None), None
    m = re.search(r"_by_+([^/]+?)\.[a-z]+$", parts[-1], flags=re.IGNORECASE)
    if m:
        return m.group(1).replace("_", " "), None
    return None, None


# ----------------------------------------------------------------------------------------------------------------
# The pool


@dataclasses.dataclass
class PoolOptions:
    cache: Path = DEFAULT_CACHE
    short_side: int = 512
    max_side: int = 2048
    quality: int = 92
    thresholds: Thresholds = dataclasses.field(default_factory=Thresholds)
    near_duplicate_bits: int = 6
    keep_downloads: bool = False
    shared_sources: Path | None = DEFAULT_SHARED_SOURCES


class Pool:
    """The cache folder: images/<package>/*.jpg, manifest.jsonl, packages.json (per-package status)."""

    def __init__(self, options: PoolOptions) -> None:
        self.o = options
        self.root = options.cache
        self.manifest_path = self.root / "manifest.jsonl"
        self.status_path = self.root / "packages.json"
        self.root.mkdir(parents=True, exist_ok=True)
        self.records = read_manifest(self.manifest_path)
        self.status: dict[str, dict] = json.loads(self.status_path.read_text()) if self.status_path.is_file() else {}
        self._upgrade()
        self.dedup = Deduper(options.near_duplicate_bits)
        for sha, name, square in load_shared_hashes(options.shared_sources):
            self.dedup.add(sha, None, f"shared:{name}", square)
        for r in self.records:
            self.dedup.add(r["sha256_original"], int(r["phash"], 16), r["file"], int(r["phash_square"], 16))

    def _upgrade(self) -> None:
        """Fill in what pools written by earlier versions of this script lack: the suite of each package (they
        only took bookworm) and the square-crop hash of each image (read from the stored file)."""
        for r in self.records:
            r.setdefault("suite", BASE_SUITE if r.get("source") == "deb" else None)
            if "phash_square" not in r:
                with Image.open(self.root / r["file"]) as im:
                    r["phash_square"] = f"{square_phash(im.convert('RGB')):016x}"
        for name, e in self.status.items():
            e.setdefault("package", name)
            e.setdefault("suite", None if name.startswith("pypi:") else BASE_SUITE)

    def save(self) -> None:
        write_manifest(self.manifest_path, self.records)
        write_atomic(self.status_path, json.dumps(self.status, indent=1, sort_keys=True) + "\n")

    def done(self, spec: PackageSpec) -> bool:
        return self.status.get(spec.key, {}).get("state") == "done"

    def forget(self, spec: PackageSpec) -> None:
        """Remove a package's images and records, and files a killed run left behind, before processing it again."""
        for r in [r for r in self.records if record_key(r) == spec.key]:
            self.dedup.remove(r["file"])
        self.records = [r for r in self.records if record_key(r) != spec.key]
        shutil.rmtree(self.root / "images" / spec.folder, ignore_errors=True)
        self.status.pop(spec.key, None)

    def process(self, spec: PackageSpec) -> dict:
        """Download, unpack, filter, convert and record one package; returns its status entry."""
        downloads, work = self.root / "downloads", self.root / "extract" / spec.folder
        archive = download(spec, downloads)
        unpack(archive, work)
        try:
            version, stanzas, pkg_license = package_metadata(spec, archive, work)
            members = [m for m in iter_members(work) if path_selected(m.path, spec)]
            reasons: Counter[str] = Counter()
            kept = self._convert_all(spec, members, work, stanzas, pkg_license, version, reasons)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if not self.o.keep_downloads:
                archive.unlink(missing_ok=True)
        licences = Counter(r["license"] for r in kept)
        entry = {"state": "done", "package": spec.name, "suite": None if spec.source == "pypi" else spec.suite,
                 "version": version, "source": spec.source, "split": spec.split, "category": spec.category,
                 "license": pkg_license, "candidates": len(members), "kept": len(kept), "rejected": dict(sorted(reasons.items())),
                 "licenses": dict(licences.most_common()), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.status[spec.key] = entry
        self.save()
        return entry

    def _convert_all(self, spec, members, work, stanzas, pkg_license, version, reasons) -> list[dict]:
        t = self.o.thresholds
        if spec.min_short is not None:
            t = dataclasses.replace(t, min_short=spec.min_short)
        out_dir = self.root / "images" / spec.folder
        out_dir.mkdir(parents=True, exist_ok=True)
        sized = []
        for m in tqdm(members, desc=f"{spec.key} scan", unit="img", leave=False):
            try:
                with Image.open(io.BytesIO(m.read())) as probe:
                    size, gray = probe.size, probe.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
            except (OSError, ValueError, Image.DecompressionBombError, zipfile.BadZipFile):
                reasons["unreadable"] += 1
                continue
            if min(size) < t.min_short:
                reasons["too-small"] += 1
                continue
            sized.append((size, gray, m))
        sized.sort(key=lambda d: (-d[0][0] * d[0][1], d[1], d[2].path))  # largest, colour first: duplicates keep the best
        kept = []
        for size, _, m in tqdm(sized, desc=f"{spec.key} convert", unit="img", leave=False):
            record = self._convert_one(spec, m, m.read(), size, t, work, stanzas, pkg_license, version, out_dir, reasons)
            if record is not None:
                kept.append(record)
        return kept

    def _convert_one(self, spec, m, raw, size, t, work, stanzas, pkg_license, version, out_dir, reasons) -> dict | None:
        sha = hashlib.sha256(raw).hexdigest()
        if self.dedup.find(sha, None) is not None and spec.split == SPLIT_TRAIN:
            reasons["duplicate"] += 1
            return None
        lic, holder = license_for(stanzas, m.license_path, pkg_license)
        if any(fnmatch.fnmatchcase(lic, pattern) for pattern in spec.exclude_licenses):
            reasons["license-excluded"] += 1
            return None
        author, meta_license = sidecar_author(work, m.path)
        if author and any(fnmatch.fnmatchcase(author, pattern) for pattern in spec.exclude_credits):
            reasons["credit-excluded"] += 1
            return None
        try:
            with Image.open(io.BytesIO(raw)) as im:
                if im.format == "JPEG":  # decode at the smallest DCT scale that still covers the target size
                    scale = self.o.short_side / min(size)
                    im.draft("RGB", (math.ceil(size[0] * scale), math.ceil(size[1] * scale)))
                rgb, transparent = to_srgb(im)
        except (OSError, ValueError, SyntaxError) as e:
            reasons["unreadable"] += 1
            tqdm.write(f"  skipped {m.path}: {e}")
            return None
        reason = reject_reason(size, transparent, None, t) or reject_reason(size, transparent, image_features(np.asarray(rgb)), t)
        if reason:
            reasons[reason] += 1
            return None
        stored = resize_short(rgb, self.o.short_side, self.o.max_side)
        ph, square = phash(stored), square_phash(stored)
        owner = self.dedup.find(sha, ph, square)
        if owner is not None:
            if spec.split == SPLIT_EVAL and not owner.startswith("shared:") and self._split_of(owner) == SPLIT_TRAIN:
                self._drop_train(owner)  # an evaluation image wins over its training copy
            else:
                reasons["duplicate"] += 1
                return None
        buf = io.BytesIO()
        stored.save(buf, "JPEG", quality=self.o.quality, subsampling=2, optimize=True)
        data = buf.getvalue()
        stem = _safe_name(re.split(r"[/:]", m.path)[-1].rsplit(".", 1)[0])[:60]
        rel = f"images/{spec.folder}/{stem}-{sha[:10]}.jpg"
        target = self.root / rel
        tmp = target.with_name(f".{target.name}.partial")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        record = {
            "file": rel, "sha256_original": sha, "sha256_stored": hashlib.sha256(data).hexdigest(), "phash": f"{ph:016x}",
            "phash_square": f"{square:016x}", "package": spec.name, "suite": None if spec.source == "pypi" else spec.suite,
            "version": version, "source": spec.source, "original_path": m.path,
            "original_size": f"{size[0]}x{size[1]}", "width": stored.width, "height": stored.height,
            "license": lic, "license_note": meta_license or spec.license_note or None, "copyright": holder,
            "author": author or holder, "split": spec.split, "category": spec.category,
        }
        self.records.append(record)
        self.dedup.add(sha, ph, rel, square)
        return record

    def _split_of(self, file: str) -> str | None:
        return next((r["split"] for r in self.records if r["file"] == file), None)

    def _drop_train(self, file: str) -> None:
        tqdm.write(f"  {file} duplicates an evaluation image: removed from the training pool")
        record = next(r for r in self.records if r["file"] == file)
        self.records.remove(record)
        self.dedup.remove(file)
        (self.root / file).unlink(missing_ok=True)
        entry = self.status.get(record_key(record))
        if entry:
            entry["kept"] -= 1
            entry.setdefault("rejected", {})["duplicate-of-eval"] = entry.get("rejected", {}).get("duplicate-of-eval", 0) + 1


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "image"


def record_key(record: dict) -> str:
    """The pool name (``NAME`` or ``SUITE:NAME``) of the package a manifest record comes from."""
    return package_key(record["package"], record.get("suite"))


def load_shared_hashes(path: Path | None) -> list[tuple[str | None, str, int | None]]:
    """(original sha256, file, square-crop hash) of the shared photos, which the pool must not repeat: the hash
    also catches a re-encoded copy of their original (another suite's build of the same wallpaper). Empty when
    ``path`` is absent; the hash is None where the photo file itself is missing."""
    if path is None or not path.is_file():
        return []
    out = []
    for e in json.loads(path.read_text()):
        photo, square = path.parent / e["file"], None
        if photo.is_file():
            with Image.open(photo) as im:
                square = square_phash(im.convert("RGB"))
        out.append((e.get("original_sha256"), e["file"], square))
    return out


def order_for_processing(specs: Iterable[PackageSpec]) -> list[PackageSpec]:
    """Evaluation packages first, so a training package can never claim an image that evaluation also has."""
    specs = list(specs)
    return [s for s in specs if s.split == SPLIT_EVAL] + [s for s in specs if s.split == SPLIT_TRAIN]


def resolve_specs(names: list[str], default_suite: str = BASE_SUITE) -> list[PackageSpec]:
    """The spec for each command-line package (``NAME``, ``SUITE:NAME``, ``pypi:NAME``; a bare name is taken from
    ``default_suite``): the curated one of that suite, else the curated rules of the same package moved to the
    asked suite, else a default spec (every image, filtered). No names: the curated list."""
    if not names:
        return list(DEFAULT_PACKAGES)
    by_key = {s.key: s for s in DEFAULT_PACKAGES}
    by_name = {s.name: s for s in DEFAULT_PACKAGES}
    specs = []
    for arg in names:
        name, suite = parse_package_arg(arg, default_suite)
        key = package_key(name, suite)
        if key in by_key:
            specs.append(by_key[key])
        elif name in by_name:
            specs.append(dataclasses.replace(by_name[name], suite=suite))
        else:
            specs.append(PackageSpec(name, suite=suite))
    return specs


def summary_table(status: dict[str, dict]) -> str:
    """Markdown table: package, suite, version, split, category, kept images, licences."""
    lines = ["| package | suite | version | split | category | images | licences |", "|---|---|---|---|---|---:|---|"]
    def order(kv: tuple[str, dict]) -> tuple:
        return kv[1].get("split") != SPLIT_EVAL, kv[1].get("package", kv[0]), kv[1].get("suite") or ""

    for key, e in sorted(status.items(), key=order):
        lic = ", ".join(f"{k} ({v})" for k, v in e.get("licenses", {}).items()) or e.get("license", "")
        cells = (e.get("package", key), e.get("suite") or "pypi", e.get("version", ""), e.get("split", ""),
                 e.get("category", ""), str(e.get("kept", 0)), lic)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"Reserved for evaluation (split = eval): {', '.join(sorted(RESERVED_EVAL))}.")
    p.add_argument("packages", nargs="*", help="Debian package names (NAME, or SUITE:NAME for another Debian suite, e.g. "
                   "trixie:budgie-backgrounds), or pypi:NAME (default: the curated list, see --list)")
    p.add_argument("--suite", default=BASE_SUITE, help=f"Debian suite of package names given without one (default {BASE_SUITE})")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help=f"pool folder, outside the repository (default {DEFAULT_CACHE})")
    p.add_argument("--short-side", type=int, default=512, help="resize so the short side is this many pixels (never upscale)")
    p.add_argument("--max-side", type=int, default=2048, help="cap on the long side after resizing (panoramas)")
    p.add_argument("--min-short", type=int, default=384, help="skip originals whose short side is smaller")
    p.add_argument("--near-duplicate-bits", type=int, default=6, help="perceptual-hash distance counted as the same picture")
    p.add_argument("--shared-sources", type=Path, default=DEFAULT_SHARED_SOURCES,
                   help="sources.json of the shared photos, never repeated in the pool")
    p.add_argument("--force", action="store_true", help="process packages again even when done")
    p.add_argument("--keep-downloads", action="store_true", help="keep the downloaded package files in CACHE/downloads")
    p.add_argument("--list", action="store_true", help="print the curated package list and exit")
    p.add_argument("--summary", action="store_true", help="print the per-package table of the pool and exit")
    args = p.parse_args(argv)
    if args.list:
        for s in DEFAULT_PACKAGES:
            print(f"{s.key:40s} {s.split:5s} {s.category:8s} {' '.join(s.include)}")
        return 0
    if args.short_side < 64 or args.min_short < 1 or args.max_side < args.short_side:
        p.error("need --short-side >= 64, --min-short >= 1 and --max-side >= --short-side")
    cache = args.cache.expanduser().resolve()
    repo = Path(__file__).resolve().parents[1]
    if cache.is_relative_to(repo):
        p.error(f"--cache {cache} is inside the repository: images and the manifest must stay out of it; pick another folder")
    options = PoolOptions(cache=cache, short_side=args.short_side, max_side=args.max_side,
                          thresholds=Thresholds(min_short=args.min_short), near_duplicate_bits=args.near_duplicate_bits,
                          keep_downloads=args.keep_downloads, shared_sources=args.shared_sources)
    pool = Pool(options)
    if args.summary:
        print(summary_table(pool.status))
        return 0
    failed = []
    try:
        specs = order_for_processing(resolve_specs(args.packages, args.suite))
    except ValueError as e:
        p.error(str(e))
    for spec in (bar := tqdm(specs, desc="packages", unit="pkg")):
        bar.set_postfix_str(spec.key)
        if pool.done(spec) and not args.force:
            continue
        pool.forget(spec)
        try:
            entry = pool.process(spec)
        except FetchError as e:
            tqdm.write(f"error: {spec.key}: {e}")
            pool.status[spec.key] = {"state": "failed", "error": str(e), "split": spec.split, "package": spec.name,
                                     "suite": None if spec.source == "pypi" else spec.suite}
            pool.save()
            failed.append(spec.key)
            continue
        tqdm.write(f"{spec.key} {entry['version']}: kept {entry['kept']} of {entry['candidates']} ({entry['split']}); "
                   f"rejected {entry['rejected']}")
    splits = Counter(r["split"] for r in pool.records)
    print(f"pool: {len(pool.records)} images ({splits[SPLIT_TRAIN]} train, {splits[SPLIT_EVAL]} eval) in {cache}")
    if failed:
        print(f"error: {len(failed)} package(s) failed: {', '.join(failed)} (rerun to retry; finished ones are skipped)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
