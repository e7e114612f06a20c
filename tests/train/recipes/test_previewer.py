"""The previewer and factors recipes on the toy dataset (a fake linear sd1 encoder), end to end through the trainer."""

import pytest
import torch

from latentbridge import weights
from latentbridge.preview import load_factors, preview
from latentbridge.train import Trainer, load_config

PREVIEWER = """[recipe]
name = "previewer"
space = "sd1"
width = 8
crop = 3
[train]
steps = 12
batch_size = 4
checkpoint_every = 6
eval_every = 6
sample_every = 12
log_every = 3
[optim]
lr = 0.003
warmup_steps = 2
"""

FACTORS = """[recipe]
name = "factors"
space = "sd1"
forms = ["linear", "affine"]
"""


def _run(tmp_path, text, data, name):
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(text)
    return Trainer(load_config(cfg), data, tmp_path / name).run()


def test_previewer_recipe_trains_and_exports_a_loadable_previewer(toy_dataset, tmp_path):
    metrics = _run(tmp_path, PREVIEWER, toy_dataset, "prev")
    assert metrics["psnr"] > 10 and metrics["psnr_affine"] > 10
    export = tmp_path / "prev" / "export" / "previewer-sd1.safetensors"
    assert export.is_file() and "parameters" in export.with_suffix(".md").read_text()
    out = preview(torch.randn(2, 4, 5, 6), "sd1", method="neural", previewer=export)
    assert out.shape == (2, 3, 5, 6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_export_keeps_the_weights_in_the_configured_dtype_and_scores_them_so(toy_dataset, tmp_path, dtype):
    metrics = _run(tmp_path, PREVIEWER + f'[export]\ndtype = "{dtype}"\n', toy_dataset, dtype)
    export = tmp_path / dtype / "export" / "previewer-sd1.safetensors"
    tensors, meta = weights.load_tensors(export)
    assert {t.dtype for t in tensors.values()} == {weights.STORAGE_DTYPES[dtype]}
    assert weights.model_info(meta).storage == dtype
    card = export.with_suffix(".md").read_text()
    assert f"- **storage**: {dtype}" in card and f"- **psnr**: {metrics['psnr']:.4f}" in card
    assert ("metrics_before_rounding_to_storage" in card) == (dtype != "float32")


def test_a_factors_export_keeps_the_default_float16(toy_dataset, tmp_path):
    _run(tmp_path, FACTORS, toy_dataset, "fac16")
    path = tmp_path / "fac16" / "export" / "factors-sd1.safetensors"
    tensors, meta = weights.load_tensors(path)
    assert {t.dtype for t in tensors.values()} == {torch.float16} and weights.model_info(meta).storage == "float16"
    assert load_factors(path).weight.dtype == torch.float32
    assert "Storage: float16 (the PSNR above is of the stored factors" in path.with_suffix(".md").read_text()


def test_previewer_recipe_starts_from_the_affine_fit(toy_dataset, tmp_path):
    cfg = tmp_path / "zero.toml"
    cfg.write_text(PREVIEWER)
    metrics = Trainer(load_config(cfg), toy_dataset, tmp_path / "zero")._evaluate()  # before any step
    assert abs(metrics["psnr"] - metrics["psnr_affine"]) < 1e-3


def test_factors_recipe_fits_in_closed_form_and_exports_a_factors_file(toy_dataset, tmp_path):
    metrics = _run(tmp_path, FACTORS, toy_dataset, "fac")
    # the fake encoder is affine in the pooled image: the affine fit is near exact, far above the SD1 matrix
    assert metrics["psnr_affine"] > 40 and metrics["psnr_affine"] > metrics["psnr_builtin"] + 10
    f = load_factors(tmp_path / "fac" / "export" / "factors-sd1.safetensors")
    assert f.form in ("linear", "affine") and f.channels == 4


def test_a_finer_previewer_is_exported_under_the_name_of_its_scale(toy_dataset, tmp_path):
    _run(tmp_path, PREVIEWER.replace("crop = 3\n", "crop = 3\nscale = 2\n"), toy_dataset, "x2")
    export = tmp_path / "x2" / "export" / "previewer-sd1-x2.safetensors"
    out = preview(torch.randn(1, 4, 5, 6), "sd1", method="neural", previewer=export)
    assert out.shape == (1, 3, 10, 12)
