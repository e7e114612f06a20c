"""Live previews for diffusers pipelines: a ``callback_on_step_end`` that shows the denoised estimate x0.

The helper wraps the pipeline scheduler's ``step`` only to *observe* its inputs (model output, timestep, sample),
computes x0 for epsilon, v-prediction and flow-matching schedulers, previews it (neural, linear or tiny), and writes
frames, an animated WebP and a grid of every batch item, or hands PIL images to a function. It never changes the
pipeline's latents, keeps one latent and small frames in memory, falls back to the linear previewer for a step on
out-of-memory, and never lets a preview error stop sampling.

Video pipelines (Wan, LTX-Video / LTX-2, HunyuanVideo) are previewed frame by frame: each step shows a strip of the
latent frames per clip. Wan and HunyuanVideo hold (B, C, T, H, W) latents; LTX pipelines hold them packed as tokens
(B, T*H*W, C) (see docs/video.md), unpacked on the grid the pipeline hands its transformer.

    live = LivePreview(pipe, out_dir="previews")
    pipe(prompt, callback_on_step_end=live, callback_on_step_end_tensor_inputs=["latents"])
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ... import io, spaces
from ...errors import InputError
from ...preview import best_method, preview
from ...preview.api import METHODS

AUTO = "auto"


def denoised(scheduler: Any, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, index: int | None,
             ) -> torch.Tensor | None:
    """x0 from one scheduler step's inputs, or None when the scheduler's parameterisation is unknown.

    Flow matching: x0 = x - sigma v. Variance-exploding sigma schedulers (Euler, Euler ancestral, Heun, LMS) are
    mapped to the variance-preserving form x_vp = x / sqrt(sigma^2 + 1); then epsilon: x0 = (x - s e) / a,
    v: x0 = a x - s v, sample: x0 = model output, with (a, s) from the schedule.
    """
    config = scheduler.config
    prediction = config.get("prediction_type", "flow_prediction" if _is_flow(scheduler) else "epsilon")
    x, out = sample.float(), model_output.float()
    sigmas = getattr(scheduler, "sigmas", None)
    if prediction == "flow_prediction" or _is_flow(scheduler):
        if sigmas is None or index is None:
            return None
        return x - _at(sigmas, index, x) * out
    if prediction == "sample":
        return out
    if sigmas is not None and index is not None and hasattr(scheduler, "_sigma_to_alpha_sigma_t"):
        alpha, sigma = scheduler._sigma_to_alpha_sigma_t(_at(sigmas, index, x))  # DPM-Solver, UniPC, DEIS
    elif sigmas is not None and index is not None and float(getattr(scheduler, "init_noise_sigma", 1.0)) > 1.0:
        s = _at(sigmas, index, x)
        alpha = 1 / torch.sqrt(s * s + 1)
        sigma, x = s * alpha, x * alpha
    elif hasattr(scheduler, "alphas_cumprod"):
        t = int(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else int(timestep)
        a = scheduler.alphas_cumprod[min(max(t, 0), len(scheduler.alphas_cumprod) - 1)].to(x.device, x.dtype)
        alpha, sigma = a.sqrt(), (1 - a).sqrt()
    else:
        return None
    if prediction == "epsilon":
        return (x - sigma * out) / alpha
    if prediction == "v_prediction":
        return alpha * x - sigma * out
    return None


def _is_flow(scheduler: Any) -> bool:
    return type(scheduler).__name__.startswith("FlowMatch") or bool(scheduler.config.get("use_flow_sigmas", False))


def _at(sigmas: torch.Tensor, index: int, like: torch.Tensor) -> torch.Tensor:
    return sigmas[min(index, len(sigmas) - 1)].to(like.device, like.dtype)


def unpack_tokens(latents: torch.Tensor, space: spaces.LatentSpace, *, height: int | None = None,
                  width: int | None = None, cell: int | None = None) -> torch.Tensor:
    """Token-packed Flux latents (B, L, C) -> spatial model-domain latents (B, C', h, w).

    FLUX.1: 64 = 16x2x2 channels per token -> (B, 16, 2h, 2w); FLUX.2: 128 channels per token -> (B, 128, h, w)
    (still 2x2 packed, as the model domain is). ``height``/``width`` are the image's pixels; without them the token
    grid is taken as square, or as the most square factorisation of L. ``cell`` is the image pixels per token
    (the pipeline's ``vae_scale_factor * 2``; default: the space's).
    """
    b, length, c = latents.shape
    cell = cell or space.taesd_downscale * 2
    if height and width:
        h, w = height // cell, width // cell
    else:
        h = math.isqrt(length)
        while length % h:
            h -= 1
        w = length // h
    if h * w != length:
        raise InputError(f"{length} tokens do not form a {h}x{w} grid: pass height= and width= (image pixels)")
    grid = latents.reshape(b, h, w, c).permute(0, 3, 1, 2)
    if space.packing is not None:
        return grid
    return spaces.unpack(grid, 2)


def takes_video_tokens(pipe: Any) -> bool:
    """Whether ``pipe`` holds its video latents packed as tokens (B, T*H*W, C*pt*p*p), as LTX pipelines do."""
    return hasattr(pipe, "transformer_temporal_patch_size")


def video_grid(pipe: Any, space: spaces.LatentSpace, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
    """The latent (T, H, W) of a clip of ``num_frames`` frames of ``height`` x ``width`` pixels: the pipeline's own
    compression ratios (the space's where it states none); causal video VAEs keep the first frame on its own."""
    t = int(getattr(pipe, "vae_temporal_compression_ratio", 0) or space.temporal_downscale)
    d = int(getattr(pipe, "vae_spatial_compression_ratio", 0) or space.downscale)
    return (num_frames - 1) // t + 1, height // d, width // d


def unpack_video_tokens(tokens: torch.Tensor, grid: tuple[int, int, int], patch: int = 1, patch_t: int = 1
                        ) -> torch.Tensor:
    """LTX-style tokens (B, T/pt * H/p * W/p, C*pt*p*p) -> (B, C, T, H, W) on the latent ``grid`` (T, H, W);
    a token holds channel-major (C, pt, p, p) features, tokens run frame, row, column."""
    b, length, features = tokens.shape
    t, h, w = grid[0] // patch_t, grid[1] // patch, grid[2] // patch
    if t * h * w != length or features % (patch_t * patch * patch):
        raise InputError(f"{length} tokens of {features} features do not form a {grid[0]}x{grid[1]}x{grid[2]} latent "
                         f"grid in {patch_t}x{patch}x{patch} patches: pass num_frames=, height= and width= (the clip's "
                         "frames and pixels)")
    x = tokens.reshape(b, t, h, w, -1, patch_t, patch, patch)
    return x.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, -1, t * patch_t, h * patch, w * patch)


def pack_video_tokens(latents: torch.Tensor, patch: int = 1, patch_t: int = 1) -> torch.Tensor:
    """Exact inverse of :func:`unpack_video_tokens`: (B, C, T, H, W) -> (B, T/pt * H/p * W/p, C*pt*p*p)."""
    b, c, t, h, w = latents.shape
    x = latents.reshape(b, c, t // patch_t, patch_t, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (t // patch_t) * (h // patch) * (w // patch), -1)


class _ObservedStep:
    """A scheduler's ``step`` that reports every call to ``observe``. A deep copy of the scheduler (LTX-2 copies it
    for its audio latents) gets the plain ``step`` back, bound to the copy, so the copy never reports audio steps
    nor advances this scheduler."""

    def __init__(self, original: Callable, observe: Callable) -> None:
        functools.update_wrapper(self, original)
        self.original, self.observe = original, observe

    def __call__(self, model_output, timestep, sample, *args, **kwargs):
        result = self.original(model_output, timestep, sample, *args, **kwargs)
        self.observe(model_output, timestep, sample, result)
        return result

    def __deepcopy__(self, memo: dict) -> Any:
        return copy.deepcopy(self.original, memo)


class LivePreview:
    """A ``callback_on_step_end`` that previews x0 at every ``every``-th step.

    ``method``: ``auto`` (neural where the space has a shipped previewer, else linear), ``linear``, ``neural`` or
    ``tiny``. ``out_dir`` receives ``step-NNNN.png`` frames (a grid of all batch items), ``preview.webp`` and
    ``grid.png`` (the last frame) when sampling ends; ``on_image(step, images)`` receives PIL images instead or as
    well. ``size`` resizes each preview (longer side, pixels); the neural method then runs the rung of the space's
    preview ladder nearest it (FLUX.2: /8 or /4, see docs/previews.md). ``height``/``width`` (image pixels) unpack
    Flux token latents that are not square. ``max_frames`` bounds the frames kept for the animation.

    Video pipelines: each step's picture is a strip of the latent frames per clip (one row per batch item, and one
    PIL strip per clip for ``on_image``); when sampling ends ``clip-N.webp`` holds the last preview of clip N, one
    frame per latent frame. LTX token latents are unpacked on the grid the pipeline hands its transformer, or on
    ``num_frames``/``height``/``width`` (the clip's frames and pixels) when given.
    """

    def __init__(self, pipe: Any = None, *, space: str | None = None, method: str = AUTO, every: int = 1,
                 out_dir: str | Path | None = None, on_image: Callable[[int, list], None] | None = None,
                 size: int | None = None, height: int | None = None, width: int | None = None,
                 num_frames: int | None = None, max_frames: int = 200, duration_ms: int = 150):
        if method != AUTO and method not in METHODS:
            raise InputError(f"unknown preview method {method!r}: use auto or one of {', '.join(METHODS)}")
        if out_dir is None and on_image is None:
            raise InputError("give out_dir= (frames, animation, grid) or on_image= (a function of step and images)")
        self.space = spaces.get(space) if space else None
        self.method, self.every, self.size = method, max(1, every), size
        self.height, self.width, self.num_frames = height, width, num_frames
        self.cell: int | None = None  # image pixels per Flux token, from the pipeline
        self.video_tokens: tuple[int, int] | None = None  # (patch, patch_t) of an LTX pipeline's token latents
        self.grid: tuple[int, int, int] | None = None  # latent (T, H, W) the transformer was last called with
        self.clips: torch.Tensor | None = None  # the last video preview (B, 3, T, h, w)
        self._pipe: Any = None
        self._hook: Any = None
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.on_image, self.max_frames, self.duration_ms = on_image, max_frames, duration_ms
        self.frames: list[torch.Tensor] = []
        self.errors: list[str] = []
        self.fallbacks = 0
        self.x0: torch.Tensor | None = None  # the latest denoised estimate (model domain, as the pipeline holds it)
        self._scheduler: Any = None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if pipe is not None:
            self.attach(pipe)

    # -- hooking the scheduler (observe only) --
    def attach(self, pipe: Any) -> None:
        """Observe ``pipe.scheduler.step`` to see each step's x0; the step itself is left exactly as it was."""
        if self.space is None:
            self.space = spaces.from_diffusers(pipe)
        if getattr(pipe, "vae_scale_factor", None):
            self.cell = int(pipe.vae_scale_factor) * 2
        scheduler = pipe.scheduler
        if self._scheduler is scheduler:
            return
        self.detach()
        self._pipe = pipe
        if takes_video_tokens(pipe):
            self.video_tokens = (int(getattr(pipe, "transformer_spatial_patch_size", 1) or 1),
                                 int(getattr(pipe, "transformer_temporal_patch_size", 1) or 1))
            transformer = getattr(pipe, "transformer", None)
            if isinstance(transformer, torch.nn.Module):
                self._hook = transformer.register_forward_pre_hook(self._see_grid, with_kwargs=True)

        def observe(model_output, timestep, sample, result):
            try:
                index = getattr(scheduler, "step_index", None)
                x0 = getattr(result, "pred_original_sample", None)
                if x0 is None:
                    x0 = denoised(scheduler, model_output, timestep, sample, None if index is None else index - 1)
                self.x0 = None if x0 is None else x0.detach().to(sample.dtype)
            except Exception as e:  # noqa: BLE001 - observing must never break sampling
                self._note(f"x0 unavailable ({type(e).__name__}: {e}); previewing the noisy latent")
                self.x0 = None

        scheduler.step = _ObservedStep(scheduler.step, observe)
        self._scheduler = scheduler

    def _see_grid(self, module: Any, args: tuple, kwargs: dict) -> None:
        """Note the latent (T, H, W) an LTX pipeline hands its transformer (observe only: changes nothing)."""
        grid = tuple(kwargs.get(k) for k in ("num_frames", "height", "width"))
        if all(isinstance(v, int) for v in grid):
            self.grid = grid  # type: ignore[assignment]

    def detach(self) -> None:
        """Give the scheduler its own ``step`` back (and the transformer its hooks)."""
        if self._scheduler is not None and "step" in vars(self._scheduler):
            del self._scheduler.step
        if self._hook is not None:
            self._hook.remove()
        self._scheduler = self._hook = None

    # -- the callback --
    def __call__(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
        """diffusers calls this after every step; it returns no tensors, so the pipeline's latents stay as they are."""
        try:
            if self._scheduler is None:
                self.attach(pipe)
            last = step + 1 >= int(getattr(pipe, "num_timesteps", 0) or 0)
            if step % self.every == 0 or last:
                latent = self.x0 if self.x0 is not None else callback_kwargs.get("latents")
                if latent is not None:
                    self._show(step, latent)
            if last:
                self.finish()
        except Exception as e:  # noqa: BLE001 - a preview must never stop sampling
            self._note(f"step {step}: preview failed ({type(e).__name__}: {e})")
        return {}

    def _show(self, step: int, latent: torch.Tensor) -> None:
        x = latent.detach()
        if x.ndim == 3 and self.video_tokens is not None:
            x = unpack_video_tokens(x, self._token_grid(), *self.video_tokens)
        elif x.ndim == 3:
            x = unpack_tokens(x, self.space, height=self.height, width=self.width, cell=self.cell)
        if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        method = self.method if self.method != AUTO else best_method(self.space)
        try:
            rgb = self._preview(x, method)
        except torch.OutOfMemoryError:
            if method == "linear":
                raise
            self.fallbacks += 1
            self._note(f"step {step}: out of memory in the {method} previewer; linear for this step")
            if x.device.type == "cuda":
                torch.cuda.empty_cache()
            rgb = self._preview(x, "linear")
        rgb = rgb.float().cpu()
        video = rgb.ndim == 5
        if video:  # a strip of the latent frames per clip
            self.clips = rgb
            rgb = torch.cat([io.make_grid(clip.transpose(0, 1), nrow=clip.shape[1]) for clip in rgb])
        frame = io.make_grid(rgb, nrow=1 if video else None) if rgb.shape[0] > 1 else rgb
        if self.on_image is not None:
            self.on_image(step, io.tensor_to_pil(rgb))
        if self.out_dir is not None:
            io.save_image(self.out_dir / f"step-{step:04d}.png", frame, overwrite=True)
            self.frames.append(frame[0])
            if len(self.frames) > self.max_frames:
                self.frames = self.frames[::2]  # keep memory bounded: halve the frame rate

    def _token_grid(self) -> tuple[int, int, int]:
        """Latent (T, H, W) of LTX tokens: from num_frames/height/width when given, else the transformer's call."""
        if self.num_frames and self.height and self.width:
            return video_grid(self._pipe, self.space, self.num_frames, self.height, self.width)
        if self.grid is None:
            raise InputError("cannot place the token latents on their frame grid yet: pass num_frames=, height= and "
                             "width= (the clip's frames and pixels) to LivePreview")
        return self.grid

    def _preview(self, x: torch.Tensor, method: str) -> torch.Tensor:
        if method == "tiny":  # full-size decode: one batch item at a time keeps the peak small
            return torch.cat([preview(x[i:i + 1], self.space, method=method, size=self.size) for i in range(len(x))])
        return preview(x, self.space, method=method, size=self.size)

    def finish(self) -> list[Path]:
        """Write the animation and the grid of the last frame (called after the last step; safe to call again)."""
        written = []
        if self.out_dir is not None and self.frames:
            same = [f for f in self.frames if f.shape == self.frames[-1].shape]
            written.append(io.save_animation(self.out_dir / "preview.webp", same, duration_ms=self.duration_ms,
                                             overwrite=True))
            written.append(io.save_image(self.out_dir / "grid.png", self.frames[-1], overwrite=True))
        if self.out_dir is not None and self.clips is not None and self.clips.shape[2] > 1:
            for i, clip in enumerate(self.clips):
                written.append(io.save_animation(self.out_dir / f"clip-{i}.webp", list(clip.transpose(0, 1)),
                                                 duration_ms=self.duration_ms, overwrite=True))
        self.detach()
        return written

    def _note(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)
            warnings.warn(f"latentbridge live preview: {message}", RuntimeWarning, stacklevel=3)
