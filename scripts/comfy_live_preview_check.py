"""Check latentbridge's live previews inside a real ComfyUI (0.8 or newer), with the pack loaded as ComfyUI loads a
custom node (a clone of this repository in ``custom_nodes/``).

For each preview method it asks ComfyUI's own ``latent_preview.get_previewer(device, comfy.latent_formats.Flux2())``
for a previewer, hands it TAEF2-encoded photos as the sampler's x0 (FLUX.2 model domain: 128 channels at /16) and
scores the image ``decode_latent_to_preview_image`` returns against the photo averaged over 8x8 cells (full-size
previews are averaged to that grid first), beside ComfyUI's own previewer (the function latentbridge wraps). It also
checks a batch (grid), a Wan 2.1 video latent (strip of frames) and what ``latent_preview.prepare_callback`` (the
samplers' callback) hands ComfyUI's progress hook, and with ``--sheet`` writes a picture of the frames, ComfyUI's
beside latentbridge's.

Run it with ComfyUI's Python and tree (the pack needs nothing installed: the clone's ``__init__.py`` puts its ``src``
on ``sys.path``)::

    git clone /path/to/latentbridge /tmp/lbclone
    PYTHONPATH=/path/to/ComfyUI /path/to/comfy-venv/bin/python scripts/comfy_live_preview_check.py \\
        --pack /tmp/lbclone --vae-approx DIR_WITH_taef2_encoder_AND_decoder [--photos DIR] [--sheet out.jpg]

Exit status 0 when the acceptance holds: auto previews score >= 28 dB on average (over all photos, and over the
bundled ones) and ``none`` gives None; the minimum is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

TARGET_DB = 28.0
METHODS = ("auto", "latent2rgb", "taesd", "none")


def load_photo(path: Path, cell: int = 16) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1], cropped to whole FLUX.2 latent cells."""
    image = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1).float() / 255
    h, w = image.shape[-2:]
    return image[None, :, : h - h % cell, : w - w % cell]


def frame_tensor(result: tuple) -> torch.Tensor:
    """The image of a previewer's ``("JPEG", PIL image, max size)`` as (1, 3, h, w) in [0, 1]."""
    return torch.from_numpy(np.asarray(result[1].convert("RGB")).copy()).permute(2, 0, 1)[None].float() / 255


def score(frame: torch.Tensor, photo: torch.Tensor) -> float:
    """PSNR (dB) of a preview against the photo averaged over 8x8 cells (a larger preview is averaged to that grid)."""
    grid = (photo.shape[-2] // 8, photo.shape[-1] // 8)
    target = F.adaptive_avg_pool2d(photo, grid)
    if frame.shape[-2:] != grid:
        frame = F.adaptive_avg_pool2d(frame, grid)
    mse = float((frame - target).pow(2).mean())
    return float(10 * np.log10(1 / max(mse, 1e-12)))


def describe(previewer: object) -> str:
    if previewer is None:
        return "None"
    return f"{type(previewer).__name__}" + (f" ({previewer.label})" if hasattr(previewer, "label") else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, required=True, help="the clone of latentbridge to load as a custom node")
    parser.add_argument("--vae-approx", type=Path, required=True, help="folder holding taef2_encoder.pth and "
                        "taef2_decoder.pth (ComfyUI's vae_approx for this run)")
    parser.add_argument("--photos", type=Path, action="append", default=[], help="more photo folders (*.jpg)")
    parser.add_argument("--sheet", type=Path, help="write the contact sheet of the bundled photos' frames here")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    os.environ["LATENTBRIDGE_COMFY_PREVIEW_BUDGET"] = "1"  # every call previews: no throttling between photos

    from comfy.cli_args import LatentPreviewMethod
    from comfy.cli_args import args as comfy_args

    comfy_args.cpu = True
    import folder_paths

    folder_paths.add_model_folder_path("vae_approx", str(args.vae_approx), is_default=True)
    import nodes

    if not asyncio.run(nodes.load_custom_node(str(args.pack))):
        print(f"error: ComfyUI could not load {args.pack} as a custom node", file=sys.stderr)
        return 1
    import comfy.latent_formats
    import comfy.utils
    import latent_preview

    from latentbridge import tiny
    from latentbridge.demo_data import EXAMPLES

    core_get_previewer = getattr(latent_preview.get_previewer, "__latentbridge_core__", None)
    print(f"pack loaded: {len(nodes.NODE_CLASS_MAPPINGS)} node classes in ComfyUI; get_previewer wrapped: "
          f"{core_get_previewer is not None}")
    if core_get_previewer is None:
        return 1
    device = torch.device("cpu")
    encoder = tiny.load(args.vae_approx / "taef2_encoder.pth", space="flux2")
    bundled = sorted(EXAMPLES.glob("*.jpg"))
    paths = bundled + [p for folder in args.photos for p in sorted(folder.glob("*.jpg"))]
    photos = [load_photo(p) for p in paths]
    with torch.no_grad():
        latents = [encoder.encode(photo, domain="model") for photo in photos]  # what a FLUX.2 sampler's x0 is

    figures: dict = {"photos": len(photos), "bundled": len(bundled), "methods": {}}
    frames: dict[str, list[torch.Tensor]] = {}
    for method in METHODS:
        comfy_args.preview_method = LatentPreviewMethod(method)
        for who, get in (("latentbridge", latent_preview.get_previewer), ("ComfyUI", core_get_previewer)):
            previewer = get(device, comfy.latent_formats.Flux2())
            row = {"previewer": describe(previewer)}
            if previewer is not None:
                shown = [frame_tensor(previewer.decode_latent_to_preview_image("JPEG", x0)) for x0 in latents]
                scores = [score(f, p) for f, p in zip(shown, photos, strict=True)]
                frames[f"{who} {method}"] = shown[: len(bundled)]
                row.update(mean_db=round(statistics.mean(scores), 2), min_db=round(min(scores), 2),
                           bundled_mean_db=round(statistics.mean(scores[: len(bundled)]), 2),
                           frame_size=list(shown[0].shape[-2:]))
            figures["methods"][f"{who} {method}"] = row
            print(f"{method:>10} {who:>12}: {json.dumps(row)}")

    comfy_args.preview_method = LatentPreviewMethod.Auto
    batch = latent_preview.get_previewer(device, comfy.latent_formats.Flux2())
    grid = frame_tensor(batch.decode_latent_to_preview_image("JPEG", torch.cat(latents[:4])))
    video_x0 = torch.randn(1, 16, 21, 30, 52)  # Wan 2.1: 81 frames of 480x832
    ours, core = latent_preview.get_previewer(device, comfy.latent_formats.Wan21()), \
        core_get_previewer(device, comfy.latent_formats.Wan21())
    strip = frame_tensor(ours.decode_latent_to_preview_image("JPEG", video_x0))
    core_frame = frame_tensor(core.decode_latent_to_preview_image("JPEG", video_x0))
    figures["batch_of_4_flux2"] = {"previewer": describe(batch), "image_size": list(grid.shape[-2:])}
    figures["wan21_video_21_frames"] = {"previewer": describe(ours), "image_size": list(strip.shape[-2:]),
                                        "comfyui_image_size": list(core_frame.shape[-2:])}
    print(f"batch of 4 FLUX.2 latents: {describe(batch)} -> {tuple(grid.shape[-2:])} grid")
    print(f"Wan 2.1 video latent (21 frames): {describe(ours)} -> {tuple(strip.shape[-2:])} strip; ComfyUI's "
          f"{describe(core)} -> {tuple(core_frame.shape[-2:])} (frame 0 only)")

    sent = []  # what a sampler's callback hands ComfyUI's progress hook (the server sends it to the browser)
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, *a, **kw: sent.append(preview))
    model = types.SimpleNamespace(load_device=device, model=types.SimpleNamespace(latent_format=comfy.latent_formats.Flux2()))
    callback = latent_preview.prepare_callback(model, 2)
    for step in range(2):
        callback(step, latents[0], latents[0], 2)
    comfy.utils.set_progress_bar_global_hook(None)
    figures["sampler_callback"] = [None if p is None else [p[0], list(p[1].size), p[2]] for p in sent]
    print(f"a FLUX.2 sampler's callback (latent_preview.prepare_callback) sent: {figures['sampler_callback']}")

    auto = figures["methods"]["latentbridge auto"]
    none = figures["methods"]["latentbridge none"]["previewer"] == "None"
    ok = auto.get("mean_db", 0) >= TARGET_DB and auto.get("bundled_mean_db", 0) >= TARGET_DB and none and all(sent)
    figures["acceptance"] = {"auto_mean_db": auto.get("mean_db"), "auto_bundled_mean_db": auto.get("bundled_mean_db"),
                             "auto_min_db": auto.get("min_db"), "target_db": TARGET_DB, "none_is_None": none, "ok": ok}
    print(f"acceptance (auto: mean over the photos and over the bundled ones >= {TARGET_DB} dB; none -> None): "
          f"{'ok' if ok else 'FAILED'}")
    if args.sheet:
        write_sheet(args.sheet, photos[: len(bundled)], frames)
        print(f"wrote {args.sheet}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1


def write_sheet(path: Path, photos: list[torch.Tensor], frames: dict[str, list[torch.Tensor]], tile: int = 128) -> None:
    """Columns: the bundled photos; rows: the photo averaged over 8x8 cells, ComfyUI's latent2rgb frame,
    latentbridge's auto frame (all enlarged to ``tile`` pixels, nearest, as the browser shows them scaled)."""
    rows = [[F.adaptive_avg_pool2d(p, (p.shape[-2] // 8, p.shape[-1] // 8)) for p in photos],
            frames["ComfyUI auto"], frames["latentbridge auto"]]
    gap = 4
    sheet = torch.ones(3, len(rows) * (tile + gap) - gap, len(photos) * (tile + gap) - gap)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            big = F.interpolate(image, size=(tile, tile), mode="nearest")[0]
            sheet[:, r * (tile + gap): r * (tile + gap) + tile, c * (tile + gap): c * (tile + gap) + tile] = big
    pixels = sheet.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(path, quality=90)


if __name__ == "__main__":
    sys.exit(main())
