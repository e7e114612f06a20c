"""ComfyUI's live previews (what every sampler shows while it runs) made by latentbridge.

ComfyUI's side of the contract (who calls what, with which latent, and what it does with the image) is in
docs/comfyui_live_previews.md.

Every sampler that goes through ``latent_preview.prepare_callback`` asks ``latent_preview.get_previewer(device,
latent_format)`` for a previewer once per run, then hands it the denoised estimate ``x0`` (model domain) at each
step. :func:`install` wraps that function (it never replaces ComfyUI's code: the original is called whenever
latentbridge has nothing better, and any extra arguments of newer ComfyUI versions are passed through) so that,
for latent formats of a registered space, the preview method picks:

* ``auto``: the neural previewer where one is shipped or installed, else fitted factors (``factors-<name>``
  files in ``models/vae_approx``, written by Fit Preview Factors, or the factors shipped with latentbridge), else
  ComfyUI's own choice (its factors, applied by latentbridge so that every item and frame shows). Of a space's
  preview ladder (FLUX.2: /8 and /4 previewers) it runs the installed rung nearest the size a tile is shown at,
  and steps down to a coarser rung for the rest of the run when a preview costs more than the budget's share of
  the time between two steps; never the tiny decoder;
* ``taesd``: the space's tiny decoder from ``models/vae_approx`` (TAEF2 and TAESana included), else ComfyUI's own
  tiny decoder where the format names one and its file is there, else as ``latent2rgb``;
* ``latent2rgb``: fitted factors where they exist, else ComfyUI's factors;
* ``none``: no preview, as always.

Beyond ComfyUI's previewers: a batch shows as a grid (not only item 0), a video latent as a strip of frames per
item (not only frame 0), the preview may be larger than ``--preview-size``, and an expensive previewer is
throttled to a share of the sampling time. A previewer error never fails a run: the preview falls back to
ComfyUI's previewer, with one log line.

Settings (read each time a sampler starts): ``LATENTBRIDGE_COMFY_PREVIEW=0`` turns the override off, as does the
"latentbridge live previews" setting of the ComfyUI frontend (it posts to :data:`ROUTE`);
``LATENTBRIDGE_COMFY_PREVIEW_SIZE`` (longest side sent, default ``--preview-size``),
``LATENTBRIDGE_COMFY_PREVIEW_BATCH`` (items shown, default 16), ``LATENTBRIDGE_COMFY_PREVIEW_FRAMES`` (frames per
video item, default 8), ``LATENTBRIDGE_COMFY_PREVIEW_BUDGET`` (largest share of wall time spent previewing,
default 0.1).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from latentbridge import preview, spaces, tiny
from latentbridge.errors import InputError, LatentBridgeError
from latentbridge.integrations.comfyui import models
from latentbridge.integrations.comfyui.common import format_space
from latentbridge.preview import neural

log = logging.getLogger("latentbridge")

ENV_SWITCH = "LATENTBRIDGE_COMFY_PREVIEW"
ENV_SIZE = "LATENTBRIDGE_COMFY_PREVIEW_SIZE"
ENV_BATCH = "LATENTBRIDGE_COMFY_PREVIEW_BATCH"
ENV_FRAMES = "LATENTBRIDGE_COMFY_PREVIEW_FRAMES"
ENV_BUDGET = "LATENTBRIDGE_COMFY_PREVIEW_BUDGET"
OFF = ("0", "false", "no", "off")
WRAPPED = "__latentbridge_core__"  # attribute of the wrapper holding the function it wraps
GAP = 2  # pixels between the tiles of a grid
FACTORS_PREFIX = "factors-"  # fitted factors in vae_approx: factors-<latent format or space>.safetensors

_switch: bool | None = None  # the frontend setting, when it has been sent; overrides the environment


@dataclass(frozen=True)
class Settings:
    """The knobs of the live previews, from the environment (see the module docstring)."""

    max_size: int
    batch: int
    frames: int
    budget: float

    @classmethod
    def read(cls, core_size: int) -> Settings:
        return cls(max_size=_env_int(ENV_SIZE, core_size), batch=_env_int(ENV_BATCH, 16),
                   frames=_env_int(ENV_FRAMES, 8), budget=min(1.0, max(1e-3, _env_float(ENV_BUDGET, 0.1))))


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        log.warning("latentbridge: %s=%r is not a whole number; using %d", name, os.environ[name], default)
        return default


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        log.warning("latentbridge: %s=%r is not a number; using %g", name, os.environ[name], default)
        return default


def enabled() -> bool:
    """Whether latentbridge makes the live previews: the frontend setting if sent, else the environment switch."""
    if _switch is not None:
        return _switch
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in OFF


def set_enabled(value: bool | None) -> None:
    """The frontend setting (None: back to the environment switch)."""
    global _switch
    _switch = value


def space_of_format(latent_format: Any) -> spaces.LatentSpace | None:
    """The registry space of a ComfyUI latent format (by class name, or an alias where a newer host names a format
    the registry does not list, e.g. ``Sana``), checked against its channels and dimensions; None when latentbridge
    does not know it."""
    space = format_space(latent_format)
    if space is None:
        try:
            space = spaces.get(type(latent_format).__name__)
        except LatentBridgeError:
            return None
    channels = getattr(latent_format, "latent_channels", None)
    video = getattr(latent_format, "latent_dimensions", 2) == 3
    return space if channels in (None, space.channels) and (space.ndim == 5) == video else None


def factors_files(space: spaces.LatentSpace, format_name: str | None = None) -> list[str]:
    """The names fitted factors for ``space`` are found under in ComfyUI's vae_approx, in order: those of the latent
    format's class (as the host names it, then the registry's) and of the space id."""
    names = (format_name, space.comfy_format, space.id)
    return [f"{FACTORS_PREFIX}{n}.safetensors" for n in dict.fromkeys(n for n in names if n)]


def installed_factors(space: spaces.LatentSpace, format_name: str | None = None) -> str | None:
    """The path of factors fitted for ``space`` in ComfyUI's vae_approx (Fit Preview Factors writes them), if any."""
    try:
        fp = models.folder_paths()
    except InputError:  # not inside ComfyUI
        return None
    return next((p for name in factors_files(space, format_name) if (p := fp.get_full_path(models.VAE_APPROX, name))),
                None)


def fitted_factors(latent_format: Any, space: spaces.LatentSpace) -> preview.Factors | None:
    """Factors fitted for the format: a file in vae_approx, else the ones latentbridge ships for the space; None
    when there are only the registry's (ComfyUI's own) factors."""
    path = installed_factors(space, type(latent_format).__name__)
    if path is not None:
        return preview.load_factors(path)
    try:
        shipped = preview.default_factors(space)
    except LatentBridgeError:
        return None
    try:
        registry = preview.builtin(space)
    except LatentBridgeError:
        registry = None
    return None if shipped is registry else shipped


def _has_tiny_decoder(space: spaces.LatentSpace) -> bool:
    if space.tiny is None:
        return False
    try:
        tiny.locate(f"{space.tiny}_decoder", download=False)
    except (LatentBridgeError, FileNotFoundError):
        return False
    return True


def _core_has_tiny_decoder(latent_format: Any) -> bool:
    """Whether ComfyUI's own taesd previewer has its file: the format names one and vae_approx holds it."""
    name = getattr(latent_format, "taesd_decoder_name", None)
    if not name:
        return False
    try:
        files = models.model_files(models.VAE_APPROX)
    except (InputError, KeyError):
        return False
    return any(f.startswith(name) for f in files)


def format_factors(latent_format: Any, space: spaces.LatentSpace) -> preview.Factors | None:
    """ComfyUI's own factors of the latent format (what its latent2rgb previewer applies to x0), where latentbridge
    can apply them the same way: per pixel on the model-domain latent, no reshape."""
    rgb, bias = getattr(latent_format, "latent_rgb_factors", None), getattr(latent_format, "latent_rgb_factors_bias", None)
    if rgb is None or space.packing is not None or getattr(latent_format, "latent_rgb_factors_reshape", None) is not None:
        return None
    weight = torch.tensor(rgb, dtype=torch.float32)
    if weight.shape != (space.channels, 3):
        return None
    return preview.Factors(weight, torch.tensor(bias, dtype=torch.float32) if bias is not None else None,
                           "affine" if bias is not None else "linear", space.id,
                           f"ComfyUI's {type(latent_format).__name__} factors")


def choose(method: str, latent_format: Any, *,
           max_size: int = 512) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]] | None:
    """latentbridge's previewer for a ComfyUI preview method and latent format: (a description, a function from
    model-domain latents to RGB in [0, 1]); None to leave it to ComfyUI.

    ``auto``: neural (a :class:`Ladder` for previews of at most ``max_size`` pixels), else fitted factors, else
    ComfyUI's factors (shown for every item and frame); ``taesd``: the
    space's tiny decoder, else ComfyUI's own tiny decoder where the format names one and its file is there, else as
    ``latent2rgb``;
    ``latent2rgb``: fitted factors, else ComfyUI's factors (every item and frame).
    """
    space = space_of_format(latent_format)
    if space is None or method not in ("auto", "taesd", "latent2rgb"):
        return None
    if method == "auto" and preview.best_method(space) == "neural":
        return f"{space.id} by the neural previewer", Ladder(space, max_size)
    if method == "taesd":
        if _has_tiny_decoder(space):
            return (f"{space.id} by the tiny decoder {space.tiny}",
                    functools.partial(_render, space=space, method="tiny"))
        if _core_has_tiny_decoder(latent_format):
            return None
    fitted = fitted_factors(latent_format, space)
    factors = fitted or format_factors(latent_format, space)
    if factors is None:
        return None
    kind = "fitted factors" if fitted is not None else "ComfyUI's factors"
    return f"{space.id} by {kind} ({factors.source})", functools.partial(_render, space=space, method="linear",
                                                                         factors=factors)


def _render(x: torch.Tensor, *, space: spaces.LatentSpace, method: str,
            factors: preview.Factors | None = None) -> torch.Tensor:
    with torch.no_grad():
        return preview.preview(x, space, method=method, domain="model", factors=factors)


class Ladder:
    """The ``auto`` render of a space with a neural previewer: per call, the installed rung of its preview ladder
    whose output is nearest the size one tile is shown at (``max_size`` over the grid's columns), at most
    ``finest`` (lowered by :meth:`step_down` when the budget is exceeded)."""

    def __init__(self, space: spaces.LatentSpace, max_size: int):
        self.space, self.max_size = space, max_size
        self.finest: int | None = None  # the largest rung scale allowed; None: every rung
        self.rung: spaces.PreviewRung | None = None  # the rung of the last render

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        longer = max(x.shape[-2:]) * (self.space.downscale // self.space.taesd_downscale)  # x is model-domain
        self.rung, path = neural.pick(self.space, longer, max(1, self.max_size // columns(x)), finest=self.finest)
        with torch.no_grad():
            return preview.preview(x, self.space, method="neural", domain="model", previewer=path)

    def step_down(self) -> bool:
        """Allow only rungs coarser than the last one used; False (nothing changes) when none of them is installed."""
        if self.rung is None:
            return False
        try:
            neural.pick(self.space, 1, finest=self.rung.scale - 1)
        except LatentBridgeError:
            return False
        self.finest = self.rung.scale - 1
        return True


def columns(x: torch.Tensor) -> int:
    """Tiles per row of the grid the previews of ``x`` make: a video item's frames in one row, else a square grid."""
    return x.shape[2] if x.ndim == 5 else math.ceil(math.sqrt(x.shape[0]))


def frame_indices(count: int, keep: int) -> list[int]:
    """``keep`` frames spread evenly over ``count`` (first and last included), or all of them."""
    if count <= keep:
        return list(range(count))
    return sorted({round(i * (count - 1) / (keep - 1)) for i in range(keep)}) if keep > 1 else [0]


def grid(tiles: torch.Tensor, columns: int) -> torch.Tensor:
    """(N, 3, h, w) tiles in rows of ``columns``, GAP black pixels apart -> one (3, H, W) image."""
    n, c, h, w = tiles.shape
    rows = math.ceil(n / columns)
    out = tiles.new_zeros(c, rows * h + (rows - 1) * GAP, columns * w + (columns - 1) * GAP)
    for i in range(n):
        r, k = divmod(i, columns)
        out[:, r * (h + GAP): r * (h + GAP) + h, k * (w + GAP): k * (w + GAP) + w] = tiles[i]
    return out


class LivePreviewer:
    """A ComfyUI previewer (``decode_latent_to_preview_image(format, x0)`` -> ("JPEG", PIL image, max size)) over
    a latentbridge render function, with batch grid, frame strip, throttling and a fall back to ComfyUI's own."""

    def __init__(self, render: Callable[[torch.Tensor], torch.Tensor], label: str, settings: Settings,
                 core: Callable[[], Any]):
        self.render, self.label, self.settings = render, label, settings
        self._core_factory, self._core, self.failed = core, None, False
        self._next = 0.0  # perf_counter time before which a new preview is skipped (throttling)
        self._last: float | None = None  # perf_counter time of the previous call: one step before this one
        self._warm = False  # whether a preview has been made (its weights are loaded)

    def tiles(self, x0: torch.Tensor) -> torch.Tensor:
        """The preview of ``x0`` as one (3, H, W) image in [0, 1]: items in a grid, video frames in a row each."""
        x = x0[: self.settings.batch]
        if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        if x.ndim == 5:
            x = x[:, :, frame_indices(x.shape[2], self.settings.frames)]
            out = self.render(x)
            if out.ndim == 4:  # frames folded into the batch, batch-major
                out = out.unflatten(0, (x.shape[0], -1)).transpose(1, 2)
            image = grid(out.transpose(1, 2).flatten(0, 1), columns(x))
        else:
            image = grid(self.render(x), columns(x))
        longest = max(image.shape[-2:])
        if longest > self.settings.max_size:
            image = preview.resize(image[None], self.settings.max_size)[0]
        return image

    def decode_latent_to_preview(self, x0: torch.Tensor) -> Any:
        """The preview as a PIL image (what ComfyUI's previewers return from this method)."""
        from PIL import Image

        image = self.tiles(x0).clamp(0, 1).mul(255).round().to(torch.uint8)
        return Image.fromarray(image.permute(1, 2, 0).cpu().numpy())

    def decode_latent_to_preview_image(self, preview_format: str, x0: torch.Tensor) -> tuple | None:
        if self.failed:
            core = self.core()
            return core.decode_latent_to_preview_image(preview_format, x0) if core is not None else None
        start = time.perf_counter()
        interval, self._last = (start - self._last if self._last is not None else None), start
        if start < self._next:
            return None  # throttled: this step goes without a preview image
        try:
            image = self.decode_latent_to_preview(x0)
        except Exception as e:  # noqa: BLE001 - a preview must never fail the run
            self.failed = True
            log.warning("latentbridge: live preview (%s) failed (%s: %s); ComfyUI's previewer takes over for this "
                        "run", self.label, type(e).__name__, e)
            return self.decode_latent_to_preview_image(preview_format, x0)
        cost = time.perf_counter() - start
        if self._warm:  # the first preview also loads the previewer's weights: it says nothing of the cost per step
            self._next = start + cost / self.settings.budget
            if interval is not None and cost > self.settings.budget * interval and self._step_down():
                log.info("latentbridge: live preview (%s) took %.0f ms, over %g of a step: a coarser previewer "
                         "for the rest of the run", self.label, cost * 1000, self.settings.budget)
        self._warm = True
        return ("JPEG", image, self.settings.max_size)

    def _step_down(self) -> bool:
        """A cheaper render where the render has one (a neural :class:`Ladder` with a coarser rung installed)."""
        step_down = getattr(self.render, "step_down", None)
        return bool(step_down()) if step_down is not None else False

    def core(self) -> Any:
        """ComfyUI's own previewer for the same call, made on first need."""
        if self._core is None:
            try:
                self._core = self._core_factory()
            except Exception as e:  # noqa: BLE001
                log.warning("latentbridge: ComfyUI's previewer failed as well (%s); no previews for this run", e)
                self._core = False
        return self._core or None


def _preview_method() -> str:
    from comfy.cli_args import args

    method = getattr(args, "preview_method", "none")
    return str(getattr(method, "value", method)).lower()


def _core_preview_size() -> int:
    from comfy.cli_args import args

    return int(getattr(args, "preview_size", 512) or 512)


def wrap(core_get_previewer: Callable[..., Any]) -> Callable[..., Any]:
    """A ``get_previewer`` that answers with latentbridge's previewer and otherwise calls ``core_get_previewer``."""

    @functools.wraps(core_get_previewer)
    def get_previewer(device: Any, latent_format: Any, *args: Any, **kwargs: Any) -> Any:
        def core() -> Any:
            return core_get_previewer(device, latent_format, *args, **kwargs)

        if not enabled():
            return core()
        try:
            method = _preview_method()
            settings = Settings.read(_core_preview_size())
            chosen = choose(method, latent_format, max_size=settings.max_size)
        except Exception as e:  # noqa: BLE001 - choosing a previewer must never fail the run
            log.warning("latentbridge: no live preview of its own (%s: %s); ComfyUI's previewer is used",
                        type(e).__name__, e)
            return core()
        if chosen is None:
            return core()
        label, render = chosen
        log.info("latentbridge live preview (%s): %s", method, label)
        return LivePreviewer(render, label, settings, core)

    setattr(get_previewer, WRAPPED, core_get_previewer)
    return get_previewer


ROUTE = "/latentbridge/live_preview"  # the frontend setting (web/latentbridge_live_preview.js) posts {"enabled": bool}


def add_route(server: Any = None) -> bool:
    """Let the frontend setting switch the live previews: a POST route on ComfyUI's server (once; True when added)."""
    try:
        from aiohttp import web
    except ImportError:  # not inside ComfyUI's server
        return False
    if server is None:
        try:
            from server import PromptServer
        except ImportError:
            return False
        server = getattr(PromptServer, "instance", None)
    if server is None or getattr(server, "_latentbridge_route", False):
        return False

    async def switch(request: Any) -> Any:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        set_enabled(bool(body.get("enabled", True)) if isinstance(body, dict) else True)
        return web.json_response({"enabled": enabled()})

    server.routes.post(ROUTE)(switch)
    server._latentbridge_route = True
    return True


def install(module: ModuleType | None = None) -> bool:
    """Wrap ``latent_preview.get_previewer`` (once; True when this call did it). Does nothing outside ComfyUI or
    when ``LATENTBRIDGE_COMFY_PREVIEW`` is off at load time."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in OFF:
        return False
    if module is None:
        try:
            import latent_preview as module
        except ImportError:
            return False
    current = getattr(module, "get_previewer", None)
    if current is None or hasattr(current, WRAPPED):
        return False
    module.get_previewer = wrap(current)
    log.info("latentbridge: live previews by latentbridge (%s=0 turns them off)", ENV_SWITCH)
    return True


def uninstall(module: ModuleType) -> None:
    """Put ComfyUI's own ``get_previewer`` back."""
    original = getattr(module.get_previewer, WRAPPED, None)
    if original is not None:
        module.get_previewer = original


__all__ = ["Ladder", "LivePreviewer", "Settings", "add_route", "choose", "enabled", "install", "set_enabled",
           "space_of_format", "uninstall", "wrap"]
