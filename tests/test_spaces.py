import pytest
import torch

from latentbridge import spaces
from latentbridge.errors import AmbiguousError, InputError, UnknownSpaceError

ALL = [s.id for s in spaces.all()]
REQUIRED = ["sd1", "sdxl", "playground25", "sd_x4", "sd3", "flux1", "flux2", "cascade_c", "cascade_b", "sana",
            "wan21", "hunyuanimage21", "chroma_radiance"]
# (channels, downscale, temporal_downscale) of the video and new spaces (issue 19; docs/spaces.md)
SHAPES = {"wan21": (16, 8, 4), "wan22": (48, 16, 4), "hunyuanvideo": (16, 8, 4), "hunyuanvideo15": (32, 16, 4),
          "ltxv": (128, 32, 8), "mochi": (12, 8, 6), "cogvideox": (16, 8, 4), "cogvideox15": (16, 8, 4),
          "cosmos1": (16, 8, 8), "qwenimage21": (64, 16, 1), "hunyuanimage3": (32, 16, 1)}


def test_registry_holds_every_required_space():
    assert set(REQUIRED) <= set(ALL)


@pytest.mark.parametrize("alias, expected", [("v1", "sd1"), ("xl", "sdxl"), ("v3", "sd3"), ("fx", "flux1"),
                                             ("ca", "cascade_b"), ("SD15", "sd1"), ("SDXL_Playground_2_5", "playground25"),
                                             ("Flux2", "flux2"), ("SC_Prior", "cascade_c"), ("sd-1.5", "sd1")])
def test_get_accepts_interposer_codes_comfy_names_and_common_names(alias, expected):
    assert spaces.get(alias).id == expected


@pytest.mark.parametrize("space_id, shape", SHAPES.items())
def test_video_and_new_spaces_have_their_published_shape(space_id, shape):
    sp = spaces.get(space_id)
    assert (sp.channels, sp.downscale, sp.temporal_downscale) == shape
    assert sp.ndim == (5 if shape[2] > 1 else 4)


@pytest.mark.parametrize("comfy, expected", [("Wan22", "wan22"), ("HunyuanVideo", "hunyuanvideo"),
                                             ("HunyuanVideo15", "hunyuanvideo15"), ("LTXV", "ltxv"), ("Mochi", "mochi"),
                                             ("CogVideoX", "cogvideox"), ("CogVideoX1_5", "cogvideox15"),
                                             ("Cosmos1CV8x8x8", "cosmos1"), ("QwenImage21", "qwenimage21")])
def test_comfyui_latent_format_names_are_aliases(comfy, expected):
    sp = spaces.get(comfy)
    assert sp.id == expected and sp.comfy_format == comfy


def test_image_spaces_have_temporal_downscale_one():
    assert all(s.temporal_downscale == 1 for s in spaces.all() if s.ndim == 4)


@pytest.mark.parametrize("bad", [dict(temporal_downscale=4), dict(temporal_downscale=0, ndim=5), dict(ndim=3)])
def test_a_space_with_inconsistent_time_is_refused(bad):
    with pytest.raises(ValueError):
        spaces.LatentSpace(id="bad", title="bad", channels=4, downscale=8, **bad)


def test_latent_shape_counts_the_first_frame_then_one_per_temporal_downscale():
    assert spaces.get("wan21").latent_shape(480, 832, frames=81) == (1, 16, 21, 60, 104)
    assert spaces.get("ltxv").latent_shape(512, 768, frames=121) == (1, 128, 16, 16, 24)
    assert spaces.get("mochi").latent_shape(480, 848, frames=163) == (1, 12, 28, 60, 106)
    assert spaces.get("sd1").latent_shape(512, 512, frames=81) == (1, 4, 64, 64)


def test_get_unknown_space_suggests_closest_names():
    with pytest.raises(UnknownSpaceError, match="did you mean flux1 or flux2"):
        spaces.get("flux3")


@pytest.mark.parametrize("space_id", ALL)
def test_every_space_entry_is_consistent(space_id):
    sp = spaces.get(space_id)
    assert sp.channels > 0 and sp.downscale > 0
    assert sp.sources, "every number needs a source"
    if sp.rgb_factors is not None:
        assert len(sp.rgb_factors) == sp.taesd_channels


@pytest.mark.parametrize("space_id", ALL)
@pytest.mark.parametrize("src", spaces.DOMAINS)
@pytest.mark.parametrize("dst", spaces.DOMAINS)
def test_convert_domain_round_trips_for_every_space(space_id, src, dst):
    sp = spaces.get(space_id)
    x = torch.randn(sp.latent_shape(64, 128, domain=src, batch=2, frames=9), dtype=torch.float64)
    y = spaces.convert_domain(x, sp, src, dst)
    assert y.shape == sp.latent_shape(64, 128, domain=dst, batch=2, frames=9)
    back = spaces.convert_domain(y, sp, dst, src)
    torch.testing.assert_close(back, x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("space_id", ALL)
def test_convert_domain_never_modifies_its_input(space_id):
    sp = spaces.get(space_id)
    x = torch.randn(sp.latent_shape(64, 64))
    before = x.clone()
    out = spaces.convert_domain(x, sp, "raw", "raw")
    out += 1
    torch.testing.assert_close(x, before)


def test_raw_to_model_matches_the_published_formulas():
    r = torch.full((1, 16, 2, 2), 2.0)
    torch.testing.assert_close(spaces.convert_domain(r, "sd3", "raw", "model"), (r - 0.0609) * 1.5305)
    torch.testing.assert_close(spaces.convert_domain(r, "flux1", "raw", "model"), (r - 0.1159) * 0.3611)
    r4 = torch.full((1, 4, 2, 2), 2.0)
    torch.testing.assert_close(spaces.convert_domain(r4, "sd1", "raw", "model"), r4 * 0.18215)
    pg = spaces.convert_domain(r4, "playground25", "raw", "model")
    assert pg[0, 0, 0, 0].item() == pytest.approx((2.0 + 1.6574) * 0.5 / 8.4927)


def test_flux2_pack_uses_channel_index_4c_plus_2i_plus_j():
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    packed = spaces.pack(x)
    assert packed.shape == (1, 8, 2, 3)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                torch.testing.assert_close(packed[0, 4 * c + 2 * i + j], x[0, c, i::2, j::2])
    torch.testing.assert_close(spaces.unpack(packed), x)


def test_flux2_taesd_domain_is_the_unpacked_model_latent():
    m = torch.randn(1, 128, 8, 8)
    t = spaces.convert_domain(m, "flux2", "model", "taesd")
    assert t.shape == (1, 32, 16, 16)
    torch.testing.assert_close(spaces.pack(t), m)


def test_validate_names_expected_channels_for_a_wrong_latent():
    with pytest.raises(InputError, match="C=16"):
        spaces.validate(torch.randn(1, 4, 8, 8), "sd3", "raw")


def test_validate_rejects_nan_latents():
    x = torch.randn(1, 4, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        spaces.validate(x, "sd1")


@pytest.mark.parametrize("scale", [5, 6.5, 8])
def test_detect_refuses_to_pick_between_sd1_and_sdxl_raw_latents(scale):
    found = spaces.detect(torch.randn(1, 4, 128, 128) * scale)
    assert found.ambiguous
    assert {"sd1", "sdxl"} <= {c.space.id for c in found.candidates[:3]}
    with pytest.raises(AmbiguousError, match=r"sd1 \(raw, \d+%\).*no space reaches 90%.*space="):
        found.require()


def test_detect_core_message_names_the_parameter_not_a_cli_flag():
    summary = spaces.detect(torch.randn(1, 4, 32, 32) * 6.5).summary
    assert "space=" in summary and "--" not in summary


@pytest.mark.parametrize("shape, expected", [((1, 48, 5, 16, 16), "wan22"), ((1, 128, 3, 8, 8), "ltxv"),
                                             ((1, 12, 3, 8, 8), "mochi"), ((1, 32, 5, 16, 16), "hunyuanvideo15")])
def test_detect_names_a_video_space_its_5d_layout_alone_identifies(shape, expected):
    assert spaces.detect(torch.randn(*shape)).require().space.id == expected


def test_detect_keeps_video_and_image_spaces_apart_by_rank():
    video = spaces.detect(torch.randn(1, 16, 5, 16, 16))
    assert video.ambiguous and {c.space.ndim for c in video.candidates} == {5}
    assert {"wan21", "hunyuanvideo", "cogvideox", "cosmos1"} <= {c.space.id for c in video.candidates}
    image = spaces.detect(torch.randn(1, 16, 16, 16) * 2.77 + 0.12)
    assert {c.space.ndim for c in image.candidates} == {4}


def test_detect_answers_when_the_statistics_are_sure():
    found = spaces.detect(torch.randn(1, 64, 32, 32) * 4.2)
    best = found.require()
    assert best.space.id == "qwenimage21" and sum(c.confidence for c in found.candidates
                                                   if c.space is best.space) >= spaces.MIN_CONFIDENCE


def test_detect_recognises_packed_flux2_by_its_128_channels():
    best = spaces.detect(torch.randn(1, 128, 32, 32)).require()
    assert (best.space.id, best.domain) == ("flux2", "raw")
    assert "128 channels" in best.reason


def test_detect_separates_raw_from_model_by_statistics():
    best = spaces.detect(torch.randn(1, 16, 32, 32) * 2.77 + 0.12).require()
    assert (best.space.id, best.domain) == ("flux1", "raw")


def test_detect_uses_the_image_size_hint_to_pick_the_downscale():
    found = spaces.detect(torch.randn(1, 32, 64, 64) * 0.8, {"image_size": (512, 512)})
    assert not found.ambiguous and found.best.space.id == "flux2" and found.best.domain == "taesd"
    found = spaces.detect(torch.randn(1, 32, 16, 16), {"image_size": (512, 512)})
    assert found.best.space.id == "sana"


def test_detect_reports_unknown_channel_counts_plainly():
    found = spaces.detect(torch.randn(1, 7, 8, 8))
    assert not found.candidates and "7-channel" in found.summary
    with pytest.raises(InputError):
        found.require()


def test_list_spaces_matches_shell_patterns():
    assert spaces.list_spaces("flux*") == ["flux1", "flux2"]


@pytest.mark.parametrize("sp", [s for s in spaces.all() if s.ndim == 5], ids=lambda s: s.id)
def test_convert_domain_on_video_latents_normalises_per_channel_not_per_frame(sp):
    raw = torch.randn(2, sp.channels, 3, 4, 5) * 2 + 0.5  # T=3 differs from C: the layout, not the sizes, says which
    before = raw.clone()
    model = spaces.convert_domain(raw, sp, "raw", "model")
    c = (1, sp.channels, 1, 1, 1)
    if sp.latents_mean is not None:
        mean, std = torch.tensor(sp.latents_mean).view(c), torch.tensor(sp.latents_std).view(c)
        want = (raw - mean) * sp.scaling_factor / std
    else:
        want = (raw - sp.shift_factor) * sp.scaling_factor
    assert model.shape == raw.shape
    torch.testing.assert_close(model, want)
    torch.testing.assert_close(spaces.convert_domain(model, sp, "model", "raw"), raw, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(spaces.convert_domain(raw, sp, "raw", "taesd"), model)
    assert torch.equal(raw, before)


def test_convert_domain_of_the_real_wan_latent_round_trips(wan_latent):
    z = wan_latent.float()
    raw = spaces.convert_domain(z, "wan21", "model", "raw")
    assert raw.shape == (1, 16, 16, 40, 64)
    torch.testing.assert_close(spaces.convert_domain(raw, "wan21", "raw", "model"), z, atol=1e-5, rtol=1e-5)


@pytest.fixture
def throwaway():
    """A space registered at run time with every kind of fact; gone again after the test."""
    sp = spaces.register(spaces.LatentSpace(
        id="throwaway7", title="Throwaway", channels=7, downscale=8, scaling_factor=0.25, shift_factor=0.1,
        aliases=("Throwaway7Format",), tiny_models=(spaces.TinyModel("taethrow"),),
        diffusers_pipelines=("ThrowawayPipeline",), diffusers_vaes=("AutoencoderKLThrowaway",),
        mixing=spaces.MixingPreset(steps=12, alpha_1=2.0), prior=1.0, sources={"scaling_factor": "this test"}))
    yield sp
    if any(s is sp for s in spaces.all()):
        spaces.unregister(sp)


def test_a_space_registered_at_run_time_is_found_by_every_lookup(throwaway, tmp_path):
    from latentbridge import mixing, tiny
    from latentbridge.tiny import layouts, loader

    assert spaces.get("throwaway7") is throwaway and spaces.get("throwaway-7-format") is throwaway
    assert spaces.all()[-1] is throwaway and spaces.list_spaces("throw*") == ["throwaway7"]
    vae = type("AutoencoderKLThrowaway", (), {"config": {"latent_channels": 7, "scaling_factor": 0.25}})()
    assert spaces.from_diffusers(type(vae)) is throwaway and spaces.from_diffusers(vae) is throwaway
    assert spaces.from_diffusers(type("ThrowawayImg2ImgPipeline", (), {"vae": vae})()) is throwaway
    assert spaces.from_diffusers({"_class_name": "AutoencoderKLThrowaway", "latent_channels": 7}) is throwaway
    assert "taethrow" in spaces.tiny_names() and loader.split_name("taethrow_decoder") == ("taethrow", "decoder")
    for role in layouts.HALVES:
        torch.save(layouts.build(role, "standard", 7).state_dict(), tmp_path / f"taethrow_{role}.pth")
    model = tiny.load("taethrow", models_dir=tmp_path)
    assert model.space is throwaway and model.latent_channels == 7
    assert mixing.preset("throwaway7") is throwaway.mixing and mixing.PRESETS["throwaway7"] is throwaway.mixing
    found = spaces.detect(torch.randn(1, 7, 16, 16) * 4 + 0.1)
    assert (found.require().space, found.best.domain) == (throwaway, "raw")


def test_unregister_forgets_the_space_in_every_lookup(throwaway):
    from latentbridge import mixing

    spaces.unregister(throwaway)
    with pytest.raises(UnknownSpaceError):
        spaces.get("Throwaway7Format")
    assert spaces.tiny_model("taethrow") is None and "throwaway7" not in mixing.PRESETS
    assert not spaces.detect(torch.randn(1, 7, 16, 16)).candidates
    with pytest.raises(InputError, match="space="):
        spaces.from_diffusers(type("AutoencoderKLThrowaway", (), {}))


def test_register_refuses_a_name_another_space_has():
    with pytest.raises(ValueError, match="already names sdxl"):
        spaces.register(spaces.LatentSpace(id="mine", title="Mine", channels=5, downscale=8, aliases=("xl",)))
    assert "mine" not in spaces.list_spaces()


@pytest.mark.parametrize("obj, expected", [
    ({"_class_name": "AutoencoderKL", "latent_channels": 4, "scaling_factor": 0.18215}, "sd1"),
    ({"_class_name": "AutoencoderKL", "latent_channels": 16, "scaling_factor": 1.5305, "shift_factor": 0.0609}, "sd3"),
    ({"_class_name": "AutoencoderKL", "latent_channels": 4, "scaling_factor": 0.5, "latents_mean": [0] * 4,
      "latents_std": [1] * 4}, "playground25"),
    ({"_class_name": "AutoencoderKLWan", "z_dim": 48, "latents_mean": [0] * 48, "latents_std": [1] * 48}, "wan22"),
    ({"_class_name": "AutoencoderKLCogVideoX", "latent_channels": 16, "scaling_factor": 0.7}, "cogvideox15"),
    ({"_class_name": "AutoencoderDC", "latent_channels": 32, "scaling_factor": 0.41407}, "sana"),
])
def test_from_diffusers_tells_shared_vae_classes_apart_by_their_config(obj, expected):
    assert spaces.from_diffusers(obj).id == expected


@pytest.mark.parametrize("name, expected", [("StableDiffusionXLImg2ImgPipeline", "sdxl"), ("StableDiffusionPipeline", "sd1"),
                                            ("StableDiffusion3Pipeline", "sd3"), ("FluxPipeline", "flux1"),
                                            ("Flux2Pipeline", "flux2"), ("QwenImagePipeline", "wan21"),
                                            ("QwenImage21Pipeline", "qwenimage21"), ("MochiPipeline", "mochi")])
def test_from_diffusers_knows_pipelines_by_the_longest_class_prefix(name, expected):
    assert spaces.from_diffusers(type(name, (), {})).id == expected


def test_from_diffusers_asks_for_the_space_when_the_pipeline_class_is_shared():
    with pytest.raises(AmbiguousError, match="wan21 or wan22.*space="):
        spaces.from_diffusers(type("WanPipeline", (), {}))
    wan22 = type("AutoencoderKLWan", (), {"config": {"z_dim": 48}})()
    assert spaces.from_diffusers(type("WanPipeline", (), {"vae": wan22})()).id == "wan22"


def test_check_domain_returns_a_known_domain_and_lists_them_for_others():
    assert [spaces.check_domain(d) for d in spaces.DOMAINS] == ["raw", "model", "taesd"]
    for bad in ("latent", "RAW", None, 3):
        with pytest.raises(InputError, match="unknown domain.*raw, model, taesd"):
            spaces.check_domain(bad)


def test_a_registered_video_space_brings_its_tiny_video_autoencoder():
    from latentbridge.tiny import video

    sp = spaces.register(spaces.LatentSpace(id="throwvideo", title="Throwaway video", channels=24, downscale=16, ndim=5,
                                            temporal_downscale=4, tiny_models=(spaces.TinyModel("taethrowv", video=True),)))
    try:
        assert video.is_published("TAETHROWV") and spaces.tiny_model("taethrowv") == (sp.tiny_models[0], sp)
        assert sp.tiny is None and spaces.detect(torch.randn(1, 24, 3, 8, 8)).require().space is sp
    finally:
        spaces.unregister(sp)
    assert not video.is_published("taethrowv")


@pytest.mark.parametrize("space", ["sd1", "sdxl", "flux1"])
def test_image_space_clips_convert_between_domains_frame_by_frame(space):
    sp = spaces.get(space)
    clip = torch.randn(1, sp.channels, 3, 4, 4)
    model = spaces.convert_domain(clip, sp, "raw", "model")
    frame = spaces.convert_domain(clip[:, :, 1], sp, "raw", "model")
    torch.testing.assert_close(model[:, :, 1], frame)


def test_a_packed_space_takes_pictures_only():
    with pytest.raises(InputError, match=r"has shape \(B, C, H, W\) with C=128; got \(1, 128, 3, 4, 4\)"):
        spaces.convert_domain(torch.randn(1, 128, 3, 4, 4), "flux2", "raw", "model")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_count_nonfinite_counts_exactly_what_testing_each_value_counts(dtype):
    torch.manual_seed(0)
    big = torch.finfo(dtype).max / 2
    clean = torch.randn(2, 4, 8, 8).to(dtype)
    overflowing = torch.full((3, 5), big, dtype=dtype)  # finite values whose sum is infinite
    holes = clean.clone()
    holes[0, 1, 2, 3], holes[1, 0, 0, 0], holes[1, 3, 7, 7] = float("nan"), float("inf"), float("-inf")
    opposite = torch.tensor([float("inf"), float("-inf"), 1.0], dtype=dtype)  # sums to NaN
    for t in (clean, overflowing, holes, opposite, torch.empty(0, dtype=dtype)):
        assert spaces.count_nonfinite(t) == int((~torch.isfinite(t)).sum())
    assert spaces.count_nonfinite(holes) == 3 and spaces.count_nonfinite(overflowing) == 0
