"""The generic training loop: exact step count, atomic checkpoints with full state, bit-exact resume,
metrics CSV and plot, sample pictures, mixed precision, and several processes through ``accelerate launch``.

Batches and dropout are seeded from (seed, step, process), so a run resumed from a checkpoint draws exactly the
batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import csv
import math
import os
import pickle
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from .. import io, limits, weights
from ..errors import InputError
from .config import RunConfig
from .dataset import DatasetInfo, LatentDataset
from .recipe import Recipe, get_recipe

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
_RESUMABLE = {"steps", "checkpoint_every", "eval_every", "sample_every"}  # may change between resumes


def _accelerator(options) -> Any:
    try:
        from accelerate import Accelerator
    except ImportError as e:
        raise InputError("training needs accelerate: pip install 'latentbridge[train]'") from e
    device = options.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("train.device = cuda but no CUDA device is available: use auto or cpu")
    if options.precision == "fp16" and device == "cpu":
        raise InputError("fp16 training needs a CUDA device; on a CPU use precision = \"bf16\" or \"fp32\"")
    precision = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[options.precision]
    return Accelerator(cpu=device == "cpu", mixed_precision=precision)


def _lr_factor(step: int, total: int, optim) -> float:
    """Linear warm-up, then constant or a cosine down to ``min_lr_ratio``."""
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.schedule == "constant":
        return 1.0
    progress = (step - optim.warmup_steps) / max(1, total - optim.warmup_steps)
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _batch_indices(n: int, batch: int, step: int, seed: int, rank: int) -> torch.Tensor:
    """Rows for ``step``: consecutive slices of per-epoch permutations, a pure function of its arguments."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, offset = divmod(start + len(out), n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(hash((seed, rank, epoch)) & 0x7FFFFFFF))
        out.extend(perm[offset:offset + batch - len(out)].tolist())
    return torch.tensor(out)


class Trainer:
    """Runs one recipe on one dataset into a run folder."""

    def __init__(self, config: RunConfig, data: str | Path, out: str | Path):
        self.config = config
        self.out = Path(out)
        self.info = DatasetInfo(data)
        limits.check_pixels(config.train.batch_size, self.info.size, self.info.size, what="a training batch",
                            fix="a smaller train.batch_size")
        self.accelerator = _accelerator(config.train)
        self.device = self.accelerator.device
        self.main = self.accelerator.is_main_process
        self.rank = self.accelerator.process_index
        recipe_cls = get_recipe(config.recipe)
        torch.manual_seed(config.train.seed)
        # Denormal floats (tiny gradients and optimiser moments) make CPU convolutions several times slower; like
        # the seed, this is the training process's setting.
        torch.set_flush_denormal(True)
        self.recipe: Recipe = recipe_cls(config.options, self.info, self.device)
        self.nets = {k: v.to(self.device) for k, v in self.recipe.build().items()}
        self.train_data = LatentDataset(self.info, split="train", keys=self.recipe.keys)
        if len(self.train_data) == 0:
            raise InputError(f"{self.info.root}: no training items (every image is in the eval split)")
        eval_data = LatentDataset(self.info, split="eval", keys=self.recipe.keys)
        self.eval_note = "held-out images"
        if len(eval_data) == 0:
            eval_data = self.train_data
            self.eval_note = "no held-out split in the dataset: metrics are on training crops"
        self.eval_data = eval_data

    def run(self, *, resume: bool = False) -> dict[str, float]:
        """Train (or fit) to the configured step count; returns the final held-out metrics."""
        cfg, acc = self.config, self.accelerator
        ckpt_path = self.out / CHECKPOINT
        if self.main:
            _check_out(self.out, resume)
            self.out.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        if self.recipe.closed_form:
            start = time.perf_counter()
            self.recipe.fit(self.nets, self.train_data)
            return self._finish(self._evaluate(), time.perf_counter() - start, 0)

        params = [p for net in self.nets.values() for p in net.parameters() if p.requires_grad]
        o = cfg.optim
        optimizer = torch.optim.AdamW(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg.train.steps, o))
        names = list(self.nets)
        prepared = acc.prepare(*self.nets.values(), optimizer)
        wrapped = dict(zip(names, prepared[:-1], strict=True))
        optimizer = prepared[-1]
        step, elapsed, window = 0, 0.0, []
        if resume:
            step, elapsed, window = self._load(ckpt_path, optimizer, scheduler)
        writer = _Metrics(self.out / METRICS, self.recipe, truncate_after=step if resume else 0, enabled=self.main)
        bar = tqdm(total=cfg.train.steps, initial=step, desc=f"train {cfg.recipe}", unit="step", disable=not self.main)
        t = cfg.train
        for net in self.nets.values():
            net.train()
        while step < t.steps:
            t0 = time.perf_counter()
            torch.manual_seed(hash((t.seed, step, self.rank)) & 0x7FFFFFFF)
            idx = _batch_indices(len(self.train_data), t.batch_size, step, t.seed, self.rank)
            batch = self.train_data.batch(idx, self.device)
            t_data = time.perf_counter() - t0
            with acc.autocast():
                loss, logs = self.recipe.loss(wrapped, batch)
            if not torch.isfinite(loss):
                raise InputError(f"the loss became {loss.item()} at step {step + 1}: lower optim.lr or use fp32")
            acc.backward(loss)
            if o.grad_clip > 0:
                acc.clip_grad_norm_(params, o.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window.append(float(acc.reduce(loss.detach(), "mean")))
            dt = time.perf_counter() - t0
            elapsed += dt
            bar.update(1)
            row: dict[str, Any] = {}
            if step % t.log_every == 0 or step == t.steps:
                row = {"step": step, "loss": sum(window) / len(window), "lr": scheduler.get_last_lr()[0],
                       "sec_per_step": dt, "data_share": t_data / dt, **logs}
                bar.set_postfix(loss=f"{row['loss']:.4g}")
                window = []
            if t.eval_every and (step % t.eval_every == 0 or step == t.steps):
                row = {"step": step, **row, **{f"eval_{k}": v for k, v in self._evaluate().items()}}
            if row:
                writer.write(row)
            if self.main and t.sample_every and (step % t.sample_every == 0 or step == t.steps):
                self._samples(step)
            if t.checkpoint_every and step % t.checkpoint_every == 0 and step < t.steps:
                self._save(ckpt_path, step, elapsed, window, optimizer, scheduler)
        bar.close()
        self._save(ckpt_path, step, elapsed, window, optimizer, scheduler)
        return self._finish(self._evaluate(), elapsed, step)

    def _plain(self) -> dict[str, torch.nn.Module]:
        return {k: self.accelerator.unwrap_model(v) for k, v in self.nets.items()}

    @torch.no_grad()
    def _evaluate(self) -> dict[str, float]:
        """Held-out metrics over the whole eval split (main process; others wait)."""
        totals: dict[str, float] = {}
        if self.main:
            nets = self._plain()
            for net in nets.values():
                net.eval()
            bs, n = self.config.train.batch_size, len(self.eval_data)
            for i in range(0, n, bs):
                idx = torch.arange(i, min(n, i + bs))
                for k, v in self.recipe.evaluate(nets, self.eval_data.batch(idx, self.device)).items():
                    totals[k] = totals.get(k, 0.0) + v * len(idx) / n
            for net in nets.values():
                net.train()
        self.accelerator.wait_for_everyone()
        return totals

    @torch.no_grad()
    def _samples(self, step: int) -> None:
        nets = self._plain()
        for net in nets.values():
            net.eval()
        idx = torch.arange(min(8, len(self.eval_data)))
        picture = self.recipe.samples(nets, self.eval_data.batch(idx, self.device))
        (self.out / "samples").mkdir(exist_ok=True)
        io.save_image(self.out / "samples" / f"step-{step:07d}.png", picture, nrow=1, overwrite=True)
        for net in nets.values():
            net.train()

    def _save(self, path: Path, step: int, elapsed: float, window: list[float], optimizer, scheduler) -> None:
        """Write the whole training state atomically (main process), then plot the metrics so far."""
        if self.main:
            state = {"format": 1, "step": step, "elapsed": elapsed, "window": window,
                     "nets": {k: v.state_dict() for k, v in self._plain().items()},
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "scaler": self.accelerator.scaler.state_dict() if self.accelerator.scaler else None,
                     "config": self.config.to_dict()}
            with io.atomic_path(path, overwrite=True) as tmp:
                torch.save(state, tmp)
            _plot(self.out / METRICS, self.out / "metrics.png")
        self.accelerator.wait_for_everyone()

    def _load(self, path: Path, optimizer, scheduler) -> tuple[int, float, list[float]]:
        state = _read_checkpoint(path, self.device)
        saved, now = state["config"], self.config.to_dict()
        changed = [f"{sec}.{k}" for sec in ("train", "optim", "recipe_options")
                   for k in set(saved[sec]) | set(now[sec]) if saved[sec].get(k) != now[sec].get(k)
                   and not (sec == "train" and k in _RESUMABLE)]
        if saved["recipe"] != now["recipe"] or changed:
            raise InputError(f"{path}: the config changed since the checkpoint ({', '.join(changed) or 'recipe'}); "
                             "resume with the same config (only steps and the *_every values may change)")
        try:
            for k, net in self._plain().items():
                net.load_state_dict(state["nets"][k])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler") and self.accelerator.scaler:
                self.accelerator.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError, TypeError):
            raise InputError(f"{path}: the checkpoint's networks or optimiser state do not fit this run's "
                             f"{self.config.recipe} recipe; start a new run in another out= folder") from None
        return state["step"], float(state["elapsed"]), list(state["window"])

    def _finish(self, metrics: dict[str, float], elapsed: float, steps: int) -> dict[str, float]:
        storage = self.config.export.dtype
        full = metrics
        if storage != "float32":  # the run is over (its checkpoint is saved): score the weights the file will hold
            self._round_weights(weights.STORAGE_DTYPES[storage])
            metrics = self._evaluate()
        if self.main:
            _plot(self.out / METRICS, self.out / "metrics.png")
            device = str(self.device)
            if self.device.type == "cuda":
                device += f" ({torch.cuda.get_device_name(self.device)})"
            else:
                threads = torch.get_num_threads()
                device += f" ({platform.processor() or platform.machine()}, {threads} thread{'s' * (threads != 1)})"
            card = {"recipe": self.config.recipe, "steps": steps, "wall_time_s": round(elapsed, 1),
                    "device": device, "processes": self.accelerator.num_processes,
                    "precision": self.config.train.precision, "batch_size": self.config.train.batch_size,
                    "data": self.info.summary(), "metrics_on": self.eval_note, "config": _portable(self.config.to_dict()),
                    "storage": storage, "metrics": metrics}
            if storage != "float32":
                card["metrics_before_rounding_to_storage"] = {k: round(v, 4) for k, v in full.items()}
            self.recipe.export(self._plain(), self.out / "export", card)
        self.accelerator.wait_for_everyone()
        return metrics


    @torch.no_grad()
    def _round_weights(self, dtype: torch.dtype) -> None:
        """Round every floating-point weight of the networks to ``dtype`` (kept in their own dtype), as the exported
        file will store them."""
        for net in self._plain().values():
            for t in [*net.parameters(), *net.buffers()]:
                if t.is_floating_point():
                    t.copy_(t.to(dtype))


def _portable(value: Any) -> Any:
    """``value`` with every string that is a path to an existing file replaced by the file's name: a model card says
    which file a run started from, not the folders of the machine that trained it."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and Path(value).name != value and Path(value).is_file():
        return Path(value).name
    return value


def _check_out(out: Path, resume: bool) -> None:
    """Refuse, before anything is written, a run folder that would lose files or has nothing to resume."""
    ckpt = out / CHECKPOINT
    if out.is_symlink() and not out.exists():
        raise InputError(f"{out}: a link to {out.readlink()}, which does not exist; choose another out=")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: a file, not a run folder; choose another out=")
    if resume and not ckpt.exists():
        raise InputError(f"{out}: nothing to resume (no {CHECKPOINT}); run without resume=True to start")
    if not resume and ckpt.exists():
        raise InputError(f"{out} already holds a run: pass resume=True to continue it or choose another out=")
    if not resume and out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out} is not empty and holds no run to resume: choose a new or empty out= folder, so that no "
                         "file in it is replaced")


_CHECKPOINT_TYPES = {"step": int, "elapsed": (int, float), "window": list, "nets": dict, "optimizer": dict,
                     "scheduler": dict, "config": dict}


def _read_checkpoint(path: Path, device: torch.device) -> dict:
    """A checkpoint this trainer wrote, or an :class:`InputError` that says why not (never torch's own advice)."""
    fresh = "start a new run in another out= folder"
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before it refuses them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(f"{path}: damaged, or holds code or objects other than tensors, so it is not loaded "
                         f"(latentbridge loads only the checkpoints it writes); {fresh}") from None
    except (RuntimeError, OSError, EOFError, ValueError, KeyError):
        raise InputError(f"{path}: unreadable checkpoint (truncated or damaged); {fresh}") from None
    if not isinstance(state, dict) or state.get("format") != 1:
        raise InputError(f"{path}: not a latentbridge training checkpoint; {fresh}")
    for key, kind in _CHECKPOINT_TYPES.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise InputError(f"{path}: incomplete checkpoint ({key!r} is missing or damaged); {fresh}")
    config = state["config"]
    if not isinstance(config.get("recipe"), str) or not all(
            isinstance(config.get(sec), dict) for sec in ("train", "optim", "recipe_options")):
        raise InputError(f"{path}: incomplete checkpoint (its config is missing or damaged); {fresh}")
    numbers = [state["elapsed"], *state["window"]]
    if state["step"] < 0 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
        raise InputError(f"{path}: damaged checkpoint (its step, time or loss window); {fresh}")
    return state


class _Metrics:
    """metrics.csv: fixed columns, one row per logged step; a resumed run drops rows past its checkpoint."""

    def __init__(self, path: Path, recipe: Recipe, *, truncate_after: int, enabled: bool):
        self.path, self.enabled = path, enabled
        self.columns = ["step", "loss", "lr", "sec_per_step", "data_share", *recipe.log_names,
                        *(f"eval_{n}" for n in recipe.eval_names)]
        if not enabled:
            return
        rows = []
        if truncate_after and path.exists():
            try:
                with open(path, newline="", encoding="utf-8") as f:
                    rows = [r for r in csv.DictReader(f)
                            if (r.get("step") or "").isdigit() and int(r["step"]) <= truncate_after]
            except (UnicodeDecodeError, csv.Error):
                raise InputError(f"{path}: damaged metrics file (not the CSV the trainer writes); move it away to "
                                 "resume without the earlier rows") from None
        with io.atomic_path(path, overwrite=True) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, self.columns)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in self.columns} for r in rows)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        unknown = set(row) - set(self.columns)
        if unknown:
            raise RuntimeError(f"recipe logged undeclared values {sorted(unknown)}")
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({k: _fmt(row.get(k)) for k in self.columns})
            f.flush()
            os.fsync(f.fileno())


def _fmt(v: Any) -> str:
    return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def read_metrics(path: Path) -> list[dict[str, float]]:
    """metrics.csv as a list of rows of floats (blank cells left out)."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def _plot(csv_path: Path, png_path: Path) -> None:
    if not csv_path.exists():
        return
    rows = read_metrics(csv_path)
    loss = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = sorted({k for r in rows for k in r if k.startswith("eval_")})
    panels = []
    if loss:
        panels.append(io.line_plot({"training loss": tuple(zip(*loss, strict=True))}, title="training loss",
                                   xlabel="step", logy=True))
    for k in evals:
        pts = [(r["step"], r[k]) for r in rows if k in r]
        panels.append(io.line_plot({k: tuple(zip(*pts, strict=True))}, title=k, xlabel="step", size=(720, 260)))
    if not panels:
        return
    sheet = Image.new("RGB", (720, sum(p.height for p in panels)), "white")
    y = 0
    for p in panels:
        sheet.paste(p, (0, y))
        y += p.height
    io.save_pil(png_path, sheet, overwrite=True)
