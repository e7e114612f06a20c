import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from latentbridge.errors import InputError
from latentbridge.train import Trainer, get_recipe, load_config, read_metrics

HERE = Path(__file__).parent
CONFIG = """recipe = "toy"
[train]
steps = {steps}
batch_size = 4
checkpoint_every = {ckpt}
eval_every = 5
sample_every = 10
log_every = 2
[optim]
lr = 0.01
warmup_steps = 3
"""


def config(tmp_path, steps=20, ckpt=10):
    p = tmp_path / f"toy-{steps}-{ckpt}.toml"
    p.write_text(CONFIG.format(steps=steps, ckpt=ckpt))
    return p


def run(cfg_path, data, out, *, resume=False, **overrides):
    from . import toy_recipe  # noqa: F401

    return Trainer(load_config(cfg_path, overrides=overrides), data, out).run(resume=resume)


def losses(out):
    return [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.csv") if "loss" in r]


def test_trainer_runs_the_exact_step_count_and_writes_everything(toy_dataset, tmp_path):
    metrics = run(config(tmp_path), toy_dataset, tmp_path / "run")
    out = tmp_path / "run"
    rows = read_metrics(out / "metrics.csv")
    assert [r["step"] for r in rows if "loss" in r] == list(range(2, 21, 2))
    assert {"eval_mse", "l1", "lr", "data_share"} <= set(rows[-1])
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 20
    assert (out / "metrics.png").is_file() and (out / "samples" / "step-0000020.png").is_file()
    assert metrics["mse"] > 0
    with safe_open(str(out / "export" / "toy.safetensors"), "pt") as f:
        assert "card" in f.metadata()
    card = (out / "export" / "toy.md").read_text()
    assert "wall_time_s" in card and "held-out" in card


def test_trainer_loss_decreases_on_a_learnable_task(toy_dataset, tmp_path):
    run(config(tmp_path, steps=60, ckpt=0), toy_dataset, tmp_path / "run")
    curve = losses(tmp_path / "run")
    assert curve[-1][1] < 0.5 * curve[0][1]


def test_trainer_resume_continues_as_if_never_stopped(toy_dataset, tmp_path, monkeypatch):
    run(config(tmp_path, steps=20, ckpt=5), toy_dataset, tmp_path / "full")
    ToyRecipe = get_recipe("toy")  # the class the trainer runs, whichever import of toy_recipe registered it
    real_loss, calls = ToyRecipe.loss, {"n": 0}

    def crash_at_step_13(self, nets, batch):
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt
        return real_loss(self, nets, batch)

    monkeypatch.setattr(ToyRecipe, "loss", crash_at_step_13)
    with pytest.raises(KeyboardInterrupt):
        run(config(tmp_path, steps=20, ckpt=5), toy_dataset, tmp_path / "split")
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["step"] == 10
    monkeypatch.setattr(ToyRecipe, "loss", real_loss)
    run(config(tmp_path, steps=20, ckpt=5), toy_dataset, tmp_path / "split", resume=True)
    assert losses(tmp_path / "split") == losses(tmp_path / "full")


def test_trainer_refuses_to_overwrite_a_run_without_resume(toy_dataset, tmp_path):
    run(config(tmp_path, steps=2), toy_dataset, tmp_path / "run")
    with pytest.raises(InputError, match="pass resume=True to continue it"):
        run(config(tmp_path, steps=2), toy_dataset, tmp_path / "run")


def test_trainer_resume_with_a_changed_config_is_refused(toy_dataset, tmp_path):
    run(config(tmp_path, steps=4), toy_dataset, tmp_path / "run")
    other = tmp_path / "other.toml"
    other.write_text(CONFIG.format(steps=8, ckpt=10).replace("lr = 0.01", "lr = 0.02"))
    with pytest.raises(InputError, match="optim.lr"):
        run(other, toy_dataset, tmp_path / "run", resume=True)


def _cli(*args):
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import toy_recipe; from latentbridge.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-c", code, *map(str, args)]


def test_trainer_killed_with_sigkill_resumes_to_the_same_loss_curve(toy_dataset, tmp_path):
    cfg = tmp_path / "long.toml"
    cfg.write_text(CONFIG.format(steps=200, ckpt=10).replace("eval_every = 5", "eval_every = 50")
                   .replace("sample_every = 10", "sample_every = 0"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny convs: thread start-up would dominate
    subprocess.run(_cli("train", cfg, "--data", toy_dataset, "--out", tmp_path / "full"), check=True,
                   capture_output=True, timeout=300, env=env)
    proc = subprocess.Popen(_cli("train", cfg, "--data", toy_dataset, "--out", tmp_path / "killed"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "the run never wrote a checkpoint"
    stopped_at = torch.load(ckpt, weights_only=True)["step"]
    assert stopped_at < 200, "the run finished before it could be killed; make it longer"
    done = subprocess.run(_cli("train", cfg, "--data", toy_dataset, "--out", tmp_path / "killed", "--resume"),
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert losses(tmp_path / "killed") == losses(tmp_path / "full")


def test_trainer_runs_under_accelerate_with_two_cpu_processes(toy_dataset, tmp_path):
    launcher = Path(sys.executable).with_name("accelerate")
    if not launcher.exists():
        pytest.skip("accelerate is not installed (pip install 'latentbridge[train]')")
    script = tmp_path / "entry.py"
    script.write_text(f"import sys; sys.path.insert(0, {str(HERE)!r}); import toy_recipe\n"
                      "from latentbridge.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(launcher), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", str(script), "train",
                           str(config(tmp_path, steps=6, ckpt=3)), "--data", str(toy_dataset), "--out",
                           str(tmp_path / "ddp")], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [s for s, _ in losses(tmp_path / "ddp")] == [2, 4, 6]
    assert (tmp_path / "ddp" / "export" / "toy.safetensors").is_file()
