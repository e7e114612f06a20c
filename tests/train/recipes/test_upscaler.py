"""The upscaler recipe on a small dataset (a fake linear encoder with a matching fake decoder), end to end."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors import safe_open
from toy_recipe import fake_encoder

from latentbridge import weights
from latentbridge.errors import InputError
from latentbridge.train import Trainer, build_dataset, load_config
from latentbridge.train.recipes.upscaler import UpscalerRecipe
from latentbridge.upscale import load, upscale

CONFIG = """[recipe]
name = "upscaler"
space = "sd1"
width = 8
blocks = 1
sub = 2
sub_channels = 4
head = 8
pairs_per_item = 2
encode_weight = 0.1
[train]
steps = 8
batch_size = 4
checkpoint_every = 4
eval_every = 8
sample_every = 8
log_every = 1
[optim]
lr = 0.003
warmup_steps = 2
"""


class FakeAutoencoder:
    """The toy encoder's pooled RGB + luminance at /8, decoded by nearest upsampling of the RGB channels."""

    has_encoder = has_decoder = True
    dtype = torch.float32

    def __init__(self):
        self.calls = 0
        self.encoder = fake_encoder()
        rgb = torch.nn.Conv2d(4, 3, 1)  # (first three channels + 1) / 2
        with torch.no_grad():
            rgb.weight.copy_(torch.eye(3, 4)[:, :, None, None] / 2)
            rgb.bias.fill_(0.5)
        self.decoder = torch.nn.Sequential(rgb, torch.nn.Upsample(scale_factor=8)).requires_grad_(False)

    def encode(self, images):
        self.calls += 1
        return self.encoder.fn(images)

    def decode(self, latents):
        return self.decoder(latents)


@pytest.fixture
def fake_ae(monkeypatch):
    ae = FakeAutoencoder()
    monkeypatch.setattr(UpscalerRecipe, "autoencoder", property(lambda self: ae))
    return ae


def _build(tmp_path, eval_pattern: str):
    """The toy dataset at three sizes in tmp_path/data (the same pictures each time), ``eval_pattern`` held out."""
    from conftest import make_images

    paths = make_images(tmp_path / "images", n=8, size=48)
    out = tmp_path / "data"
    build_dataset(paths, [fake_encoder()], out, size=32, extra_sizes=(16, 24), crops=2, shard_size=8,
                  eval_patterns=[eval_pattern], root=tmp_path / "images")
    return out


@pytest.fixture
def sized_dataset(tmp_path):
    return _build(tmp_path, "img_0[67]*")


def _train(tmp_path, data, name, text=CONFIG, **overrides):
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(text)
    return Trainer(load_config(cfg, overrides=overrides), data, tmp_path / name)


def test_upscaler_recipe_trains_and_exports_a_loadable_upscaler(sized_dataset, fake_ae, tmp_path):
    metrics = _train(tmp_path, sized_dataset, "run").run()
    assert {"psnr_2x", "psnr_bicubic_2x", "psnr_1.5x", "mse_encode"} <= set(metrics)
    export = tmp_path / "run" / "export" / "upscaler-sd1.safetensors"
    card = export.with_suffix(".md").read_text()
    assert "psnr_roundtrip_2x" in card and "psnr_learned_1.5x" in card and "16->32" in card
    model = load(export)
    assert model.config.scale_ranges == ((0.5, 0.5), (1.0, 4.0)) and model.config.channels == 4
    assert upscale(torch.randn(1, 4, 3, 5), "sd1", 2, method="nn", model=export).shape == (1, 4, 6, 10)
    assert (tmp_path / "run" / "samples" / "step-0000008.png").is_file()


def test_upscaler_recipe_caches_round_trip_targets_beside_the_dataset(sized_dataset, fake_ae, tmp_path):
    _train(tmp_path, sized_dataset, "a", steps=1).run()
    calls = fake_ae.calls
    assert calls > 0 and list(sized_dataset.glob("upscaler-targets-*.safetensors"))
    recipe = _train(tmp_path, sized_dataset, "b", steps=1).recipe
    assert recipe.precompute_s < 5 and fake_ae.calls == calls  # read back, not recomputed


def test_upscaler_recipe_recomputes_its_cached_targets_when_a_rebuild_moves_the_eval_split(sized_dataset, fake_ae,
                                                                                           tmp_path):
    _train(tmp_path, sized_dataset, "a", steps=1).run()
    calls = fake_ae.calls
    assert _build(tmp_path, "img_0[45]*") == sized_dataset  # the same pictures and options: the same plan
    recipe = _train(tmp_path, sized_dataset, "b", steps=1).recipe
    recipe._targets()
    assert fake_ae.calls > calls  # computed for the new train split, not read from the old split's cache
    assert len(list(sized_dataset.glob("upscaler-targets-*.safetensors"))) == 2


def test_upscaler_recipe_resume_draws_the_same_batches(sized_dataset, fake_ae, tmp_path, monkeypatch):
    _train(tmp_path, sized_dataset, "full").run()
    real, calls = UpscalerRecipe.loss, []

    def dies_after_the_checkpoint(self, nets, batch):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt  # killed between the checkpoint at step 4 and the next one
        return real(self, nets, batch)

    monkeypatch.setattr(UpscalerRecipe, "loss", dies_after_the_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, sized_dataset, "part").run()
    monkeypatch.setattr(UpscalerRecipe, "loss", real)
    _train(tmp_path, sized_dataset, "part").run(resume=True)

    def losses(name):
        with open(tmp_path / name / "metrics.csv") as f:
            return [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]

    assert losses("part") == pytest.approx(losses("full"), rel=1e-5)


def test_upscaler_recipe_rejects_datasets_without_usable_size_pairs(tmp_path, fake_ae, toy_dataset):
    with pytest.raises(InputError, match="no pair of sizes"):
        _train(tmp_path, toy_dataset, "x")
    with pytest.raises(InputError, match="scale_ranges"):
        _train(tmp_path, toy_dataset, "y", text=CONFIG.replace("encode_weight = 0.1", "scale_ranges = [[2.0, 1.0]]"))


def test_upscaler_recipe_image_loss_scores_the_decoded_prediction_against_the_photo(sized_dataset, fake_ae, tmp_path):
    text = CONFIG.replace("encode_weight = 0.1", "roundtrip_weight = 0.0\nimage_weight = 2.0\nimage_window = 2\n"
                                                 "image_margin = 0\nimage_batch = 2")
    run = _train(tmp_path, sized_dataset, "img", text=text)
    run.run()
    with open(tmp_path / "img" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["loss"]]
    assert rows and all(float(r["loss"]) == pytest.approx(2.0 * float(r["mse_image"]), rel=1e-4) for r in rows)
    recipe, nets = run.recipe, run.recipe.build()
    torch.manual_seed(0)
    loss, logs = recipe.loss(nets, {"n": torch.zeros(4)})
    loss.backward()
    assert logs["mse_image"] > 0 and nets["upscaler"].conv_out.weight.grad.abs().sum() > 0
    card = (tmp_path / "img" / "export" / "upscaler-sd1.md").read_text()
    assert "decoded prediction against the photo (weight 2" in card


def test_upscaler_recipe_init_starts_from_a_trained_upscaler_of_the_same_architecture(sized_dataset, fake_ae,
                                                                                       tmp_path):
    _train(tmp_path, sized_dataset, "first").run()
    export = tmp_path / "first" / "export" / "upscaler-sd1.safetensors"
    text = CONFIG.replace("encode_weight = 0.1", f"encode_weight = 0.1\ninit = '{export}'")
    net = _train(tmp_path, sized_dataset, "tuned", text=text).recipe.build()["upscaler"]
    trained = load(export).net.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in net.state_dict().items())
    _train(tmp_path, sized_dataset, "tuned", text=text).run()
    with safe_open(str(tmp_path / "tuned" / "export" / "upscaler-sd1.safetensors"), "pt") as f:
        card = json.loads(f.metadata()[weights.CARD])
    assert card["config"]["recipe_options"]["init"] == export.name  # the card names no folder of this machine
    with pytest.raises(InputError, match="recipe.init .*architecture"):
        _train(tmp_path, sized_dataset, "wider", text=text.replace("width = 8", "width = 16")).recipe.build()


def test_upscaler_recipe_refuses_all_weights_zero(sized_dataset, fake_ae, tmp_path):
    with pytest.raises(InputError, match="all 0"):
        _train(tmp_path, sized_dataset, "zero", text=CONFIG.replace("encode_weight = 0.1", "roundtrip_weight = 0.0"))
