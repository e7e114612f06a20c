"""The interposer recipe on a tiny dataset made by fake encoders standing in for TAEF2 (flux2) and TAESana (sana)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from torch import nn

from latentbridge import spaces, weights
from latentbridge.errors import InputError
from latentbridge.interposer import BridgeConfig, BridgeNet, V4Interposer, bridge_metadata, check_state_dict, discover, load_file
from latentbridge.train import Encoder, Trainer, build_dataset, load_config, read_metrics
from latentbridge.train.cards import save_model
from latentbridge.train.recipes import interposer as recipe_module

ROOT = Path(__file__).resolve().parents[3]
CONFIG = """[recipe]
name = "interposer"
src = "flux2"
dst = "sana"
arch = "{arch}"
width = 8
blocks = 1
hi_width = 4
r_weight = 0.5
h_weight = 0.5
src_decoder = "{decoder}"
image_weight = {image}
image_window = 4
image_margin = 1
[train]
steps = {steps}
batch_size = 4
checkpoint_every = {ckpt}
eval_every = 3
sample_every = 6
log_every = 1
[optim]
lr = 0.01
warmup_steps = 2
"""


def _projection(channels: int, seed: int) -> torch.Tensor:
    return torch.randn(channels, 3, generator=torch.Generator().manual_seed(seed))


def fake_encoder(space: str) -> Encoder:
    """Image -> a tanh of a fixed projection of the pooled image: 32 channels at /8 (flux2) or /32 (sana)."""
    sp = spaces.get(space)
    weight = _projection(sp.taesd_channels, seed=len(space))

    def encode(images: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(images * 2 - 1, sp.taesd_downscale)
        return torch.tanh(torch.einsum("kc,bchw->bkhw", weight, pooled)) * 2

    return Encoder(f"fake{space}", f"fake{space}", sp, "taesd", encode)


class FakeDecoder(nn.Module):
    """flux2 taesd latent -> RGB: a 1x1 conv and a nearest x8 upsample (differentiable, a table like the real one)."""

    dtype = torch.float32

    def __init__(self):
        super().__init__()
        self.decoder = nn.Sequential(nn.Conv2d(32, 3, 1), nn.Sigmoid(), nn.Upsample(scale_factor=8))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)


@pytest.fixture(autouse=True)
def _fake_decoder_one_thread(monkeypatch):
    """A fake tiny decoder, and one thread: these networks are too small for OpenMP to pay off."""
    monkeypatch.setattr(recipe_module, "_load_decoder", lambda name, device: FakeDecoder().to(device))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(folder: Path, n: int = 10, size: int = 64) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 255, (size // 16, size // 16, 3)).astype(np.uint8)
        img = Image.fromarray(arr).resize((size, size), Image.Resampling.BICUBIC)
        paths.append(folder / f"img_{i:02d}.png")
        img.save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("interposer")
    paths = _images(root / "images")
    out = root / "data"
    build_dataset(paths, [fake_encoder("flux2"), fake_encoder("sana")], out, size=64, crops=2, shard_size=8,
                  eval_patterns=["img_0[89]*"], root=root / "images")
    return out


def _config(tmp_path: Path, *, steps: int = 6, ckpt: int = 0, arch: str = "bridge", image: float = 1.0,
            decoder: str = "fake") -> Path:
    p = tmp_path / f"cfg-{arch}-{steps}-{ckpt}-{image}.toml"
    p.write_text(CONFIG.format(arch=arch, steps=steps, ckpt=ckpt, image=image, decoder=decoder))
    return p


def _trainer(cfg: Path, data: Path, out: Path) -> Trainer:
    return Trainer(load_config(cfg), data, out)


def test_interposer_recipe_trains_both_directions_and_exports_loadable_models(dataset, tmp_path):
    metrics = _trainer(_config(tmp_path), dataset, tmp_path / "run").run()
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert {"p", "b", "r", "h", "image", "eval_fwd_rel_mse", "eval_back_rel_mse", "eval_back_psnr"} <= set(rows[-1])
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 7))
    assert metrics["fwd_rel_mse"] > 0 and "back_psnr" in metrics
    export = tmp_path / "run" / "export"
    net, entry = load_file(export / "interposer-flux2-to-sana.safetensors")
    assert (entry.src, entry.dst, entry.domain_in) == ("flux2", "sana", "taesd") and "rel_mse" in entry.metrics
    assert net(torch.randn(1, 32, 8, 8)).shape == (1, 32, 2, 2)
    assert "rel_mse" in (export / "interposer-sana-to-flux2.md").read_text()
    assert {(e.src, e.dst) for e in discover(export, hub=False)} == {("flux2", "sana"), ("sana", "flux2")}


def test_relative_mse_loss_weighs_each_crop_by_its_own_variance():
    scale = torch.tensor([1.0, 0.5]).view(2, 1, 1, 1)  # the second crop: the first at half the scale
    target = torch.randn(1, 4, 8, 8) * scale
    pred = target + 0.1 * torch.randn(1, 4, 8, 8) * scale
    per_crop = [float(recipe_module.relative_mse_loss(pred[i:i + 1], target[i:i + 1])) for i in range(2)]
    assert per_crop[0] == pytest.approx(per_crop[1])  # a quarter of the squared error, and of the variance
    assert float(recipe_module.relative_mse_loss(pred, target)) == pytest.approx(sum(per_crop) / 2)
    flat = torch.zeros(1, 4, 8, 8)
    assert float(recipe_module.relative_mse_loss(flat + 0.01, flat)) == pytest.approx(1e-4 / 0.05)


def test_round_trip_losses_train_only_their_own_model(dataset, tmp_path):
    trainer = _trainer(_config(tmp_path, image=0.0, decoder=""), dataset, tmp_path / "run")
    recipe, nets = trainer.recipe, trainer.nets
    batch = trainer.train_data.batch(torch.arange(4))
    src, dst = batch[recipe.src_key], batch[recipe.dst_key]
    r = recipe._latent_loss(recipe_module._frozen(nets["backward"], nets["forward"](src)), src, recipe.src)
    r.backward()
    assert all(p.grad is None for p in nets["backward"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in nets["forward"].parameters())
    for net in nets.values():
        net.zero_grad(set_to_none=True)
    h = recipe._latent_loss(recipe_module._frozen(nets["forward"], nets["backward"](dst)), dst, recipe.dst)
    h.backward()
    assert all(p.grad is None for p in nets["forward"].parameters())


def test_partner_runs_in_eval_mode_and_keeps_its_batchnorm_statistics(dataset, tmp_path):
    trainer = _trainer(_config(tmp_path, arch="v4", image=0.0, decoder=""), dataset, tmp_path / "run")
    fwd, back = trainer.nets["forward"], trainer.nets["backward"]
    fwd.train()
    back.train()
    before = {k: v.clone() for k, v in back.state_dict().items() if "running" in k}
    src = trainer.train_data.batch(torch.arange(4))[trainer.recipe.src_key]
    recipe_module._frozen(back, fwd(src)).sum().backward()
    after = back.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items()) and back.training


def test_v4_arch_exports_a_file_in_the_v4_layout(dataset, tmp_path):
    _trainer(_config(tmp_path, arch="v4", image=0.0, decoder="", steps=2), dataset, tmp_path / "run").run()
    net, entry = load_file(tmp_path / "run" / "export" / "interposer-sana-to-flux2.safetensors")
    assert isinstance(net, V4Interposer) and net.config.scale == 4 and entry.arch == "bridge"
    check_state_dict(net.state_dict(), net.config)


def test_latents_are_normalised_per_space(dataset, tmp_path):
    trainer = _trainer(_config(tmp_path), dataset, tmp_path / "run")
    data = trainer.train_data.tensors[trainer.recipe.src_key].float()
    torch.testing.assert_close(trainer.nets["forward"].in_mean, data.mean((0, 2, 3)))
    torch.testing.assert_close(trainer.nets["backward"].out_std, data.std((0, 2, 3)))


def test_interrupted_interposer_run_resumes_to_the_same_losses(dataset, tmp_path, monkeypatch):
    cfg = _config(tmp_path, steps=6, ckpt=3)
    _trainer(cfg, dataset, tmp_path / "full").run()
    real, calls = recipe_module.InterposerRecipe.loss, {"n": 0}

    def crash_at_step_5(self, nets, batch):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, nets, batch)

    monkeypatch.setattr(recipe_module.InterposerRecipe, "loss", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        _trainer(cfg, dataset, tmp_path / "split").run()
    monkeypatch.setattr(recipe_module.InterposerRecipe, "loss", real)
    _trainer(cfg, dataset, tmp_path / "split").run(resume=True)

    def curve(run):
        return [(r["step"], r["loss"]) for r in read_metrics(tmp_path / run / "metrics.csv") if "loss" in r]

    assert curve("split") == curve("full")


def test_eval_falls_back_to_training_crops_without_a_held_out_split(tmp_path):
    paths = _images(tmp_path / "images", n=4)
    build_dataset(paths, [fake_encoder("flux2"), fake_encoder("sana")], tmp_path / "data", size=64)
    metrics = _trainer(_config(tmp_path, steps=2), tmp_path / "data", tmp_path / "run").run()
    assert metrics["fwd_rel_mse"] > 0
    assert "training crops" in (tmp_path / "run" / "export" / "interposer-flux2-to-sana.md").read_text()


def _with_init(cfg: Path, *paths: Path) -> Path:
    cfg.write_text(cfg.read_text().replace("[train]", f"init = {[str(p) for p in paths]!r}\n[train]"))
    return cfg


def test_init_starts_the_network_of_the_files_direction_from_it(dataset, tmp_path):
    _trainer(_config(tmp_path, steps=3), dataset, tmp_path / "first").run()
    start_file = tmp_path / "first" / "export" / "interposer-sana-to-flux2.safetensors"
    start, _ = load_file(start_file)
    fresh = _trainer(_config(tmp_path, steps=3), dataset, tmp_path / "fresh").nets
    trainer = _trainer(_with_init(_config(tmp_path, steps=3), start_file), dataset, tmp_path / "run")
    nets = trainer.nets
    for k, v in start.state_dict().items():  # the file keeps float16 weights: the network holds exactly those
        assert torch.equal(nets["backward"].state_dict()[k], v.float()), k
    assert all(torch.equal(v, fresh["forward"].state_dict()[k]) for k, v in nets["forward"].state_dict().items())
    trainer.run()
    card = (tmp_path / "run" / "export" / "interposer-sana-to-flux2.md").read_text()
    assert "**started from**: interposer-sana-to-flux2.safetensors" in card
    assert "**latent loss**: l1" in card
    assert "started from" not in (tmp_path / "run" / "export" / "interposer-flux2-to-sana.md").read_text()


def test_init_from_a_file_of_another_pair_or_architecture_is_refused(dataset, tmp_path):
    other = BridgeNet(BridgeConfig.for_ratio(16, 32, Fraction(4), width=8, blocks=1, hi_width=4, hi_blocks=1))
    sd3_file = tmp_path / "interposer-sd3-to-sana.safetensors"
    save_model(sd3_file, other.state_dict(), bridge_metadata(other, src="sd3", dst="sana", domain_in="taesd",
                                                             domain_out="taesd"), "card")
    with pytest.raises(InputError, match="sd3 -> sana.*flux2 <-> sana"):
        _trainer(_with_init(_config(tmp_path), sd3_file), dataset, tmp_path / "run")
    _trainer(_config(tmp_path, steps=3), dataset, tmp_path / "first").run()
    wider = _config(tmp_path)
    wider.write_text(wider.read_text().replace("width = 8", "width = 12"))
    with pytest.raises(InputError, match="architecture"):
        _trainer(_with_init(wider, tmp_path / "first" / "export" / "interposer-flux2-to-sana.safetensors"), dataset,
                 tmp_path / "run")


def test_init_grows_a_file_into_a_config_with_input_blocks_that_starts_as_the_same_function(dataset, tmp_path):
    _trainer(_config(tmp_path, steps=3), dataset, tmp_path / "first").run()
    start_file = tmp_path / "first" / "export" / "interposer-flux2-to-sana.safetensors"
    start, _ = load_file(start_file)
    grown_cfg = _config(tmp_path, steps=3)
    grown_cfg.write_text(grown_cfg.read_text().replace("blocks = 1\n", "blocks = 1\nin_blocks = 1\n", 1))
    trainer = _trainer(_with_init(grown_cfg, start_file), dataset, tmp_path / "run")
    net = trainer.nets["forward"]
    assert net.config.in_blocks == 1
    x = torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net(x), start.float()(x), atol=1e-5)
    trainer.run()
    grown_file = tmp_path / "run" / "export" / "interposer-flux2-to-sana.safetensors"
    grown, _ = load_file(grown_file)
    assert grown.config.in_blocks == 1
    with safe_open(str(grown_file), "pt") as f:
        card = json.loads(f.metadata()[weights.CARD])
    assert card["config"]["recipe_options"]["init"] == [start_file.name]  # the card names no folder of this machine


@pytest.mark.parametrize("change, message", [('arch = "bridge"', 'arch = "unet"'), ('dst = "sana"', 'dst = "flux2"'),
                                             ('dst = "sana"', 'dst = "sd1"')])
def test_bad_recipe_options_are_refused(dataset, tmp_path, change, message):
    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text().replace(change, message))
    with pytest.raises(InputError):
        _trainer(cfg, dataset, tmp_path / "run")


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("interposer-*.toml")), ids=lambda p: p.name)
def test_shipped_interposer_configs_are_valid(path):
    config = load_config(path)
    assert config.recipe == "interposer" and config.train.steps > 0
