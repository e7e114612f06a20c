"""TAEF2 as a FLUX.2 pipeline's vae, checked against the pipelines' own latent handling on a small random setup."""

from functools import cache

import pytest
import torch

from latentbridge import spaces
from latentbridge.errors import InputError
from latentbridge.tiny import TinyAutoencoder, arch

diffusers = pytest.importorskip("diffusers")
from latentbridge.integrations.diffusers.tiny_vae import TinyFlux2VAE  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@cache
def _taef2_shaped() -> TinyAutoencoder:
    torch.manual_seed(0)
    return TinyAutoencoder(variant="flux_2", latent_channels=32, encoder=arch.encoder(32, "flux_2"),
                           decoder=arch.decoder(32, "flux_2"), space=spaces.get("flux2")).eval().requires_grad_(False)


def _vae() -> TinyFlux2VAE:
    vae = TinyFlux2VAE(_taef2_shaped())
    torch.manual_seed(1)
    with torch.no_grad():  # statistics like FLUX.2's (running_var 2.9..3.5): the round trip must cancel them
        vae.bn.running_mean.normal_(0, 0.3)
        vae.bn.running_var.uniform_(2.9, 3.5)
    return vae


def _pipeline(vae: TinyFlux2VAE):
    torch.manual_seed(0)
    transformer = diffusers.Flux2Transformer2DModel(
        patch_size=1, in_channels=128, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, timestep_guidance_channels=32, axes_dims_rope=(4, 4, 4, 4), guidance_embeds=False)
    return diffusers.Flux2KleinPipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae,
                                        text_encoder=None, tokenizer=None, transformer=transformer)


def test_decode_undoes_the_pipelines_denormalisation():
    vae = _vae()
    normalised = torch.randn(2, 128, 3, 4)  # what the transformer samples: packed, batch-norm normalised
    # the pipelines' decode preamble, verbatim in effect
    mean = vae.bn.running_mean.view(1, -1, 1, 1)
    std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
    z = diffusers.Flux2KleinPipeline._unpatchify_latents(normalised * std + mean)
    got = vae.decode(z).sample
    want = _taef2_shaped().decode(spaces.unpack(normalised)) * 2 - 1
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_encode_then_the_pipelines_normalisation_gives_taesd_latents():
    vae = _vae()
    images = torch.rand(1, 3, 32, 48)
    z = diffusers.Flux2KleinPipeline._patchify_latents(vae.encode(images * 2 - 1).latents)
    mean = vae.bn.running_mean.view(1, -1, 1, 1)
    std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
    torch.testing.assert_close(spaces.unpack((z - mean) / std), _taef2_shaped().encode(images), atol=1e-5, rtol=1e-5)


def test_pipeline_output_is_taef2_decoding_of_its_latents():
    vae = _vae()
    pipe = _pipeline(vae)
    assert pipe.vae_scale_factor == 8
    kwargs = dict(prompt_embeds=torch.randn(1, 8, 32), height=64, width=64, num_inference_steps=2,
                  guidance_scale=1.0)
    images = pipe(**kwargs, output_type="pt", generator=torch.Generator().manual_seed(0)).images
    latents = pipe(**kwargs, output_type="latent", generator=torch.Generator().manual_seed(0)).images
    packed = diffusers.Flux2KleinPipeline._patchify_latents(latents)  # the VAE latent, re-normalised by hand
    normalised = (packed - vae.bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
        vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
    want = _taef2_shaped().decode(spaces.unpack(normalised)).clamp(0, 1)
    assert images.shape == (1, 3, 64, 64)
    torch.testing.assert_close(images, want, atol=1e-4, rtol=1e-4)


def test_pipeline_image_to_image_encodes_the_reference():
    from PIL import Image

    pipe = _pipeline(_vae())
    reference = Image.new("RGB", (64, 64), (200, 40, 90))
    out = pipe(image=[reference], prompt_embeds=torch.randn(1, 8, 32), height=64, width=64, num_inference_steps=2,
               guidance_scale=1.0, output_type="pt").images
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()


def test_from_vae_takes_the_statistics_and_tiling_matches():
    kl = diffusers.AutoencoderKLFlux2(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)
    with torch.no_grad():
        kl.bn.running_mean.normal_()
        kl.bn.running_var.uniform_(2.9, 3.5)
    vae = TinyFlux2VAE.from_vae(kl, _taef2_shaped())
    torch.testing.assert_close(vae.bn.running_var, kl.bn.running_var)
    assert vae.config.batch_norm_eps == kl.config.batch_norm_eps
    z = torch.randn(1, 32, 8, 6)
    whole = vae.decode(z).sample
    vae.enable_tiling(4)
    vae.enable_slicing()
    torch.testing.assert_close(vae.decode(z).sample, whole, atol=1e-5, rtol=1e-5)


def test_rejects_a_model_that_is_not_taef2():
    sd = TinyAutoencoder(variant="standard", latent_channels=4, decoder=arch.decoder(4))
    with pytest.raises(InputError, match="TAEF2"):
        TinyFlux2VAE(sd)
