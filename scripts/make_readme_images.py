"""Make the README pictures in docs/images/ from the output of ``latentbridge demo``.

They show only the bundled public-domain examples (src/latentbridge/data/examples, see its CREDITS.md):

    LATENTBRIDGE_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/latentbridge demo -o /tmp/readme-demo
    .venv/bin/python scripts/make_readme_images.py /tmp/readme-demo

``tiny-roundtrip.jpg`` comes from the demo's ``tiny.png``, which the demo writes only when ``taef2_encoder.pth``
and ``taef2_decoder.pth`` are in a folder named in ``$LATENTBRIDGE_MODELS``; without it that picture is left as it is.

``video-preview.webp`` comes from the real Wan 2.1 latent of madebyollin/taehv (MIT; ``examples/test_latents_wan.pth``,
NTCHW, never committed here):

    .venv/bin/python scripts/make_readme_images.py --video ../shared/data/latents/wan21_test_latents.pth
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from latentbridge.demo_data import EXAMPLES
from latentbridge.io import tensor_to_pil
from latentbridge.preview import preview

OUT = Path(__file__).resolve().parent.parent / "docs" / "images"
PAD = 2  # pixels around each tile, as latentbridge.io.make_grid pads
LIMIT = 150_000  # bytes: README pictures stay small


def tiles(grid: Image.Image, rows: int, cols: int) -> list[list[Image.Image]]:
    """Cut a demo grid of ``rows`` x ``cols`` padded tiles back into its tiles."""
    w, h = (grid.width - PAD * (cols + 1)) // cols, (grid.height - PAD * (rows + 1)) // rows
    return [[grid.crop((PAD + c * (w + PAD), PAD + r * (h + PAD), PAD + c * (w + PAD) + w, PAD + r * (h + PAD) + h))
             for c in range(cols)] for r in range(rows)]


def sheet(rows: list[list[Image.Image]], side: int, resample: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
    """Tiles (a list of rows) resized to ``side`` x ``side`` on a white sheet."""
    cols = max(len(r) for r in rows)
    out = Image.new("RGB", (PAD + cols * (side + PAD), PAD + len(rows) * (side + PAD)), "white")
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            out.paste(tile.resize((side, side), resample), (PAD + c * (side + PAD), PAD + r * (side + PAD)))
    return out


def tiles_of_pair(pair: Image.Image) -> list[Image.Image]:
    """A photo | round-trip pair (two square halves side by side) as two tiles."""
    side = pair.height
    return [pair.crop((0, 0, side, side)), pair.crop((pair.width - side, 0, pair.width, side))]


def save(image: Image.Image, name: str) -> None:
    path = OUT / name
    image.save(path, optimize=True) if path.suffix == ".png" else image.save(path, quality=85, optimize=True)
    size = path.stat().st_size
    print(f"{path}: {image.width}x{image.height}, {size / 1000:.0f} kB")
    if size > LIMIT:
        raise SystemExit(f"{path} is over {LIMIT // 1000} kB: make it smaller")


def video(latent_path: Path, scale: int = 3, duration_ms: int = 250) -> None:
    """video-preview.webp: the Wan latent's per-frame linear preview beside what ComfyUI 0.8's live preview shows of
    it (x0[0, :, 0], the first frame, with the same Wan21 factors), one animation frame per latent frame."""
    z = torch.load(latent_path, map_location="cpu", weights_only=True).permute(0, 2, 1, 3, 4).float()  # NTCHW -> NCTHW
    h, w = z.shape[-2] * scale, z.shape[-1] * scale
    frames = preview(z, "wan21", method="linear", domain="model", size=(h, w))[0]  # (3, T, h, w)
    first = frames[:, 0]
    label_h = 14
    out = []
    for t in range(frames.shape[1]):
        canvas = Image.new("RGB", (2 * w + 3 * PAD, h + label_h + 2 * PAD), "white")
        canvas.paste(tensor_to_pil(frames[:, t])[0], (PAD, label_h + PAD))
        canvas.paste(tensor_to_pil(first)[0], (w + 2 * PAD, label_h + PAD))
        draw = ImageDraw.Draw(canvas)
        draw.text((PAD + 2, 2), f"latentbridge: frame {t + 1}/{frames.shape[1]}", fill="black")
        draw.text((w + 2 * PAD + 2, 2), "ComfyUI 0.8: frame 1 only", fill="black")
        out.append(canvas)
    path = OUT / "video-preview.webp"
    out[0].save(path, save_all=True, append_images=out[1:], duration=duration_ms, loop=0, quality=70)
    size = path.stat().st_size
    print(f"{path}: {len(out)} frames of {out[0].width}x{out[0].height}, {size / 1000:.0f} kB")
    if size > LIMIT:
        raise SystemExit(f"{path} is over {LIMIT // 1000} kB: make it smaller")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo", type=Path, nargs="?", help="folder written by 'latentbridge demo -o FOLDER'")
    parser.add_argument("--comfyui", type=Path, help="outputs of examples/comfyui/photo_tour.json (run_workflow.py "
                        "--outputs DIR): makes comfyui-tour.jpg")
    parser.add_argument("--video", type=Path, help="the Wan 2.1 latent of madebyollin/taehv (NTCHW .pth): makes "
                        "video-preview.webp")
    args = parser.parse_args()
    if args.demo is None and args.video is None:
        parser.error("give the demo folder, --video LATENT, or both")
    OUT.mkdir(parents=True, exist_ok=True)
    if args.video:
        video(args.video)
    if args.demo:
        demo_pictures(args.demo, args.comfyui)


def demo_pictures(demo: Path, comfyui: Path | None) -> None:
    """The pictures made from ``latentbridge demo``'s output (and the ComfyUI tour's, when given)."""

    # Previews: rows photo / linear / neural per space; 6 photos, tiles already scaled up (nearest) by the demo.
    flux2 = tiles(Image.open(demo / "preview-flux2.png").convert("RGB"), 3, 6)
    sana = tiles(Image.open(demo / "preview-sana.png").convert("RGB"), 3, 6)
    save(sheet([flux2[0], flux2[1], flux2[2], sana[1], sana[2]], 112, Image.Resampling.NEAREST), "previews.jpg")

    shutil.copyfile(demo / "mixing_schedules.png", OUT / "mixing-schedules.png")
    print(f"{OUT / 'mixing-schedules.png'}: copied")

    # Mixing upscale: 5 rows (photo, bicubic, alpha 3, alpha 1 stop 1.5, no mixing) x 2 photos -> one row per photo.
    runs = tiles(Image.open(demo / "mixing_upscale.png").convert("RGB"), 5, 2)
    save(sheet([[row[i] for row in runs] for i in range(2)], 160), "mixing-upscale.jpg")

    # 2x upscales seen through the linear previewer: rows flux2 / sana, 512 px columns nearest | bicubic (| nn once an
    # upscaler is on disk), no padding: halve it.
    upscaled = Image.open(demo / "upscale.png").convert("RGB")
    save(upscaled.resize((upscaled.width // 2, upscaled.height // 2), Image.Resampling.LANCZOS), "upscale.jpg")

    # Conversion: rows flux2 / sana latent, columns its preview | there and back | the converted latent's preview;
    # written only when the interposer models are on disk.
    convert = demo / "convert.png"
    if convert.is_file():
        save(Image.open(convert).convert("RGB"), "convert.jpg")

    tiny = demo / "tiny.png"
    if tiny.is_file():  # pairs photo | round trip (twice as wide as high), two per row: keep the first row
        grid = Image.open(tiny).convert("RGB")
        pair_h = (grid.width - 3 * PAD) // 4
        pairs = tiles(grid, (grid.height - PAD) // (pair_h + PAD), 2)[0]
        save(sheet([[half for pair in pairs for half in tiles_of_pair(pair)]], 192), "tiny-roundtrip.jpg")
    else:
        print(f"{tiny}: not there (no TAEF2 weights when the demo ran); tiny-roundtrip.jpg left as it is")

    if comfyui:  # the input photo, then each SaveImage of the tour in the order of their prefixes
        shots = sorted((comfyui / "tour").glob("*.png"))
        photo = Image.open(EXAMPLES / "bee.jpg")  # the tour's LoadImage input
        save(sheet([[photo.convert("RGB"), *(Image.open(f).convert("RGB") for f in shots)]], 192), "comfyui-tour.jpg")


if __name__ == "__main__":
    main()
