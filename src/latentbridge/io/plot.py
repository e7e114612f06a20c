"""Small line plots drawn with Pillow (schedules, loss curves) so no plotting library is needed."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127))


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if step * m >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def line_plot(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (720, 440),
    logy: bool = False,
) -> Image.Image:
    """Draw named (xs, ys) series on shared axes, with ticks and a legend; returns an RGB image."""
    width, height = size
    left, right, top, bottom = 70, 20, 36, 50
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    pts = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys, strict=False) if math.isfinite(y) and (y > 0 or not logy)]
    if not pts:
        draw.text((left, height // 2), "no data", fill="black", font=font)
        return image
    fy = (lambda v: math.log10(v)) if logy else (lambda v: v)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(fy(p[1]) for p in pts), max(fy(p[1]) for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (width - left - right),
                height - bottom - (fy(y) - y0) / (y1 - y0) * (height - top - bottom))

    draw.rectangle((left, top, width - right, height - bottom), outline="black")
    for t in _ticks(x0, x1):
        px = left + (t - x0) / (x1 - x0) * (width - left - right)
        draw.line((px, height - bottom, px, height - bottom + 4), fill="black")
        draw.text((px - 12, height - bottom + 6), f"{t:g}", fill="black", font=font)
    for t in _ticks(y0, y1):
        py = height - bottom - (t - y0) / (y1 - y0) * (height - top - bottom)
        draw.line((left - 4, py, left, py), fill="black")
        draw.line((left, py, width - right, py), fill=(230, 230, 230))
        draw.text((4, py - 6), f"{10 ** t:.3g}" if logy else f"{t:.3g}", fill="black", font=font)
    for i, (name, (xs, ys)) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        line = [to_px(x, y) for x, y in zip(xs, ys, strict=False) if math.isfinite(y) and (y > 0 or not logy)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        elif line:
            draw.ellipse((line[0][0] - 2, line[0][1] - 2, line[0][0] + 2, line[0][1] + 2), fill=colour)
        draw.line((width - right - 150, top + 10 + 14 * i, width - right - 130, top + 10 + 14 * i), fill=colour, width=2)
        draw.text((width - right - 125, top + 4 + 14 * i), name, fill="black", font=font)
    draw.text((left, 10), title, fill="black", font=font)
    draw.text(((width - len(xlabel) * 6) / 2, height - 18), xlabel, fill="black", font=font)
    draw.text((4, 14), ylabel, fill="black", font=font)
    return image
