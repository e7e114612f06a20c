"""convert_latents between small random diffusers pipelines and VAEs built here (offline, nothing is run through a
network except the interposer): each side's VAE config, FLUX token packing and FLUX.2 batch-norm statistics."""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from tests.interposer.helpers import write_bridge  # noqa: E402

from latentbridge import interposer, spaces  # noqa: E402
from latentbridge.errors import InputError  # noqa: E402
from latentbridge.integrations.diffusers import convert_latents  # noqa: E402
from latentbridge.integrations.diffusers.convert import latent_form  # noqa: E402

LEVELS = (8, 8, 8, 8)  # four VAE levels: vae_scale_factor 8, as in the real models


def kl(channels: int, scaling: float, shift: float | None = None, **stats):
    return diffusers.AutoencoderKL(block_out_channels=LEVELS, down_block_types=("DownEncoderBlock2D",) * 4,
                                   up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=channels,
                                   norm_num_groups=4, scaling_factor=scaling, shift_factor=shift, **stats)


def sdxl(**stats):
    return diffusers.StableDiffusionXLPipeline(vae=kl(4, stats.pop("scaling", 0.13025), **stats), text_encoder=None,
                                               text_encoder_2=None, tokenizer=None, tokenizer_2=None, unet=None,
                                               scheduler=None, add_watermarker=False)


def sd1():
    return diffusers.StableDiffusionPipeline(vae=kl(4, 0.18215), text_encoder=None, tokenizer=None, unet=None,
                                             scheduler=None, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)


def flux1():
    return diffusers.FluxPipeline(scheduler=None, vae=kl(16, 0.3611, 0.1159), text_encoder=None, tokenizer=None,
                                  text_encoder_2=None, tokenizer_2=None, transformer=None)


def flux2_vae():
    vae = diffusers.AutoencoderKLFlux2(block_out_channels=LEVELS, layers_per_block=1, norm_num_groups=4)
    vae.bn.running_mean.copy_(torch.randn(128) * 0.3)
    vae.bn.running_var.copy_(torch.rand(128) * 3 + 1)
    return vae


def flux2(vae=None):
    return diffusers.Flux2KleinPipeline(scheduler=None, vae=vae or flux2_vae(), text_encoder=None, tokenizer=None,
                                        transformer=None)


def sana():
    vae = diffusers.AutoencoderDC(latent_channels=32, encoder_block_out_channels=(8,) * 6,
                                  decoder_block_out_channels=(8,) * 6, encoder_layers_per_block=(1,) * 6,
                                  decoder_layers_per_block=(1,) * 6, attention_head_dim=8, scaling_factor=0.41407)
    return diffusers.SanaPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=None, scheduler=None)


def test_latent_form_reads_space_normalisation_and_packing_from_each_pipeline():
    for pipe, space, tokens in ((sd1(), "sd1", False), (sdxl(), "sdxl", False), (flux1(), "flux1", True),
                                (flux2(), "flux2", False), (sana(), "sana", False)):
        form = latent_form(pipe)
        assert (form.space.id, form.tokens, form.vae_only) == (space, tokens, False)
        assert form.space.scaling_factor == pytest.approx(pipe.vae.config.get("scaling_factor") or 1.0)
    assert latent_form(flux2_vae()).vae_only and latent_form(kl(16, 1.5305, 0.0609)).space.id == "sd3"
    with pytest.raises(InputError, match="cannot tell the latent space of this AutoencoderKL.*from_space"):
        latent_form(kl(4, 0.5))


def test_same_space_renormalises_from_one_vae_config_to_the_other():
    mean, std = [0.1, -0.2, 0.3, 0.0], [1.5, 2.0, 0.5, 1.0]
    playground = sdxl(scaling=0.5, latents_mean=mean, latents_std=std)
    x = torch.randn(2, 4, 8, 6)
    out = convert_latents(x, sdxl(), playground)
    want = (x / 0.13025 - torch.tensor(mean).view(1, 4, 1, 1)) * 0.5 / torch.tensor(std).view(1, 4, 1, 1)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(convert_latents(out, playground, sdxl()), x, rtol=1e-5, atol=1e-5)


def test_flux1_tokens_unpack_with_the_image_size_and_pack_back():
    pipe, vae = flux1(), kl(16, 0.3611, 0.1159)
    spatial = torch.randn(1, 16, 6, 10)  # a 48x80 image
    tokens = pipe._pack_latents(spatial, 1, 16, 6, 10)
    raw = convert_latents(tokens, pipe, vae, height=48, width=80)
    torch.testing.assert_close(raw, spatial / 0.3611 + 0.1159)
    torch.testing.assert_close(convert_latents(raw, vae, pipe), tokens)
    torch.testing.assert_close(convert_latents(raw, vae, pipe, packed=False), spatial)
    torch.testing.assert_close(convert_latents(spatial, pipe, vae), raw)  # unpacked pipeline latents work too
    with pytest.raises(InputError, match="15 tokens do not form the token grid.*pass height= and width="):
        convert_latents(tokens, pipe, vae)


def test_flux2_vae_latents_become_the_pipelines_normalised_patchified_latents():
    vae = flux2_vae()
    pipe = flux2(vae)
    raw = torch.randn(2, 32, 8, 12)
    out = convert_latents(raw, vae, pipe)
    mean = vae.bn.running_mean.view(1, -1, 1, 1)
    std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
    want = (pipe._patchify_latents(raw) - mean) / std  # what Flux2Pipeline does to encoded images
    torch.testing.assert_close(out, want)
    tokens = convert_latents(raw, vae, pipe, packed=True)
    torch.testing.assert_close(tokens, pipe._pack_latents(want))  # what output_type="latent" returns
    torch.testing.assert_close(convert_latents(tokens, pipe, vae, height=64, width=96), raw, rtol=1e-5, atol=1e-5)


def test_conversion_runs_the_interposer_route_between_the_spaces(tmp_path):
    folder = tmp_path / "models"
    write_bridge(folder, "flux2", "sana")
    source, target = flux2(), sana()
    tokens = torch.randn(1, 16, 128)  # a 64x64 image: a 4x4 token grid
    out = convert_latents(tokens, source, target, models_dir=folder)
    grid = tokens.transpose(1, 2).reshape(1, 128, 4, 4)
    want = interposer.convert(grid, "flux2", "sana", domain="raw", models_dir=folder) * 0.41407
    assert out.shape == (1, 32, 2, 2)
    torch.testing.assert_close(out, want)
    with pytest.raises(InputError, match="no interposer route from sana to flux2"):
        convert_latents(out, target, source, models_dir=folder)


def test_bad_inputs_say_what_to_fix():
    with pytest.raises(InputError, match="C=16"):
        convert_latents(torch.randn(1, 4, 8, 8), flux1(), kl(16, 0.3611, 0.1159))
    with pytest.raises(InputError, match="only FLUX.1, FLUX.2 and LTX pipelines take token-packed latents"):
        convert_latents(torch.randn(1, 4, 8, 8), sd1(), sd1(), packed=True)
    with pytest.raises(InputError, match="a FLUX.2 VAE latent is"):
        convert_latents(torch.randn(1, 128, 4, 4), flux2_vae(), flux2())
    with pytest.raises(InputError, match="expected a diffusers pipeline with a .vae, or a VAE"):
        convert_latents(torch.randn(1, 4, 8, 8), "sd1", sd1())
    assert spaces.get("flux2").packing is not None


def test_example_runs_offline(tmp_path, monkeypatch, capsys):
    import runpy
    import sys
    from pathlib import Path

    write_bridge(tmp_path, "flux2", "sana")
    example = Path(__file__).resolve().parents[2] / "examples" / "diffusers" / "convert_latents.py"
    monkeypatch.setattr(sys, "argv", [str(example), "--models-dir", str(tmp_path), "--height", "64", "--width", "96"])
    runpy.run_path(str(example), run_name="__main__")
    out = capsys.readouterr().out
    assert "tokens (1, 24, 128) -> latents (1, 32, 2, 3) for SanaPipeline" in out and "round trip max error" in out


def test_wan_pipeline_latents_convert_to_the_wan_vaes_own_latent_and_back():
    from tests.integrations.video_pipelines import wan_pipeline

    pipe = wan_pipeline()
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, 16, 1, 1, 1)
    model = torch.randn(2, 16, 5, 4, 6)  # T=5 differs from C=16
    raw = convert_latents(model, pipe, pipe.vae)
    torch.testing.assert_close(raw, model * std + mean)  # what WanPipeline does before vae.decode
    torch.testing.assert_close(convert_latents(raw, pipe.vae, pipe), model, atol=1e-5, rtol=1e-5)
    form = latent_form(pipe)
    assert form.space.id == "wan21" and not form.tokens and latent_form(wan_pipeline(48).vae).space.id == "wan22"


def test_ltx_pipeline_tokens_convert_to_the_ltx_vaes_own_latent_and_back():
    from tests.integrations.video_pipelines import ltx_pipeline

    pipe = ltx_pipeline()
    tokens = torch.randn(1, 3 * 8 * 16, 128)  # 9 frames of 32x64 px through the tiny VAE's /4 in time and space
    raw = convert_latents(tokens, pipe, pipe.vae, num_frames=9, height=32, width=64)
    want = pipe._denormalize_latents(pipe._unpack_latents(tokens, 3, 8, 16, 1, 1), pipe.vae.latents_mean,
                                     pipe.vae.latents_std, pipe.vae.config.scaling_factor)  # what LTXPipeline decodes
    assert raw.shape == (1, 128, 3, 8, 16)
    torch.testing.assert_close(raw, want)
    torch.testing.assert_close(convert_latents(raw, pipe.vae, pipe), tokens, atol=1e-5, rtol=1e-5)
    spatial = convert_latents(tokens, pipe, pipe, num_frames=9, height=32, width=64, packed=False)
    torch.testing.assert_close(spatial, pipe._unpack_latents(tokens, 3, 8, 16, 1, 1))
    assert latent_form(pipe).video_patch == (1, 1)


def test_video_latents_that_cannot_convert_say_why():
    from tests.integrations.video_pipelines import ltx_pipeline, wan_pipeline

    with pytest.raises(InputError, match="num_frames=, height= and width="):
        convert_latents(torch.randn(1, 384, 128), ltx_pipeline(), ltx_pipeline().vae)
    with pytest.raises(InputError, match="no interposer route from wan21 to ltxv"):
        convert_latents(torch.randn(1, 16, 3, 4, 4), wan_pipeline(), ltx_pipeline(), models_dir="nowhere")
    with pytest.raises(InputError, match="hold 16/16 values but wan22 latents have 48 channels"):
        latent_form(diffusers.AutoencoderKLWan(base_dim=3, z_dim=48, dim_mult=[1, 1, 1, 1], num_res_blocks=1))
