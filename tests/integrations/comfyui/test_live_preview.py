"""Live previews: ComfyUI's get_previewer wrapped, latentbridge's previewer chosen per method and latent format, with
batch grids, video strips, throttling and a fall back to ComfyUI's previewer."""

from __future__ import annotations

import asyncio
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import shared_file
from tests.integrations.comfyui import fake_comfy

from latentbridge import preview, tiny
from latentbridge.demo_data import EXAMPLES
from latentbridge.integrations.comfyui import live_preview, models
from latentbridge.preview import neural


@pytest.fixture
def lp(monkeypatch, comfy):
    """ComfyUI's latent_preview (the stand-in) with latentbridge's wrapper installed; the switch from the env."""
    monkeypatch.delenv(live_preview.ENV_SWITCH, raising=False)
    monkeypatch.setattr(live_preview, "_switch", None)
    module = fake_comfy.install_previews(monkeypatch)
    models.register_model_folders()
    assert live_preview.install(module)
    return module


def use(monkeypatch, method: str) -> None:
    monkeypatch.setattr(fake_comfy.sys.modules["comfy.cli_args"].args, "preview_method",
                        fake_comfy.LatentPreviewMethod(method))


def vae_approx(comfy) -> Path:
    folder = Path(comfy.get_folder_paths("vae_approx")[0])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255


def test_install_wraps_get_previewer_once_and_uninstall_restores_it(lp):
    assert hasattr(lp.get_previewer, live_preview.WRAPPED)
    assert not live_preview.install(lp)
    live_preview.uninstall(lp)
    assert lp.get_previewer is fake_comfy.core_get_previewer


def test_environment_switch_off_leaves_comfyui_alone(monkeypatch, comfy):
    module = fake_comfy.install_previews(monkeypatch)
    monkeypatch.setenv(live_preview.ENV_SWITCH, "0")
    assert not live_preview.install(module) and module.get_previewer is fake_comfy.core_get_previewer


def test_switch_off_after_install_hands_out_comfyuis_previewer(lp, monkeypatch):
    monkeypatch.setenv(live_preview.ENV_SWITCH, "off")
    assert isinstance(lp.get_previewer("cpu", fake_comfy.Flux2()), fake_comfy.CorePreviewer)
    monkeypatch.delenv(live_preview.ENV_SWITCH)
    live_preview.set_enabled(False)
    assert isinstance(lp.get_previewer("cpu", fake_comfy.Flux2()), fake_comfy.CorePreviewer)


def test_auto_gives_flux2_the_neural_previewer_and_none_gives_no_preview(lp, monkeypatch):
    previewer = lp.get_previewer("cpu", fake_comfy.Flux2())
    assert isinstance(previewer, live_preview.LivePreviewer) and "neural" in previewer.label
    x0 = torch.randn(1, 128, 4, 6)
    kind, image, size = previewer.decode_latent_to_preview_image("JPEG", x0)
    _, rung = neural.pick("flux2", 12, 512)  # the ladder's rung for one 512-pixel tile (the /8 one or finer)
    want = preview.preview(x0, "flux2", method="neural", domain="model", previewer=rung)[0]
    assert (kind, size, image.size) == ("JPEG", 512, (want.shape[2], want.shape[1]))
    assert (as_tensor(image) - want).abs().max() <= 0.5 / 255 + 1e-6
    use(monkeypatch, "none")
    assert lp.get_previewer("cpu", fake_comfy.Flux2()) is None


@pytest.mark.parametrize("max_size, batch, scale", [(512, 1, 2), (19, 1, 2), (18, 1, 1), (12, 1, 1), (48, 4, 2),
                                                    (36, 4, 1)])
def test_auto_runs_the_ladder_rung_nearest_the_size_a_tile_is_shown_at(lp, comfy, preview_rungs, monkeypatch,
                                                                     max_size, batch, scale):
    # a 12 x 8 preview at /8, 24 x 16 at /4 (a tile of 18 is a tie: the cheaper /8); a batch of 4 is 2 tiles a row
    paths = {s: preview_rungs("flux2", s, folder=vae_approx(comfy)) for s in (1, 2)}
    monkeypatch.setenv(live_preview.ENV_SIZE, str(max_size))
    previewer = lp.get_previewer("cpu", fake_comfy.Flux2())
    x0 = torch.randn(batch, 128, 4, 6)
    previewer.tiles(x0)
    assert previewer.render.rung.scale == scale
    want = preview.preview(x0[:1], "flux2", method="neural", domain="model", previewer=paths[scale])[0]
    if batch == 1 and max(want.shape[-2:]) <= max_size:  # not shrunk to the size: the rung's own pixels
        image = as_tensor(previewer.decode_latent_to_preview(x0))
        assert (image[:, : want.shape[1], : want.shape[2]] - want).abs().max() <= 0.5 / 255 + 1e-6


def test_auto_steps_down_a_rung_for_the_run_when_a_preview_costs_more_than_its_budget(lp, comfy, preview_rungs,
                                                                                      monkeypatch):
    for scale in (1, 2):
        preview_rungs("flux2", scale, folder=vae_approx(comfy))
    # start and end of each preview made: loading (not counted), 2 s of a 10 s step (over 10%), then after the throttle
    clock = iter([0.0, 1.0, 10.0, 12.0, 31.0, 31.1])
    monkeypatch.setattr(live_preview.time, "perf_counter", lambda: next(clock))
    monkeypatch.setenv(live_preview.ENV_BUDGET, "0.1")
    previewer = lp.get_previewer("cpu", fake_comfy.Flux2())
    x0 = torch.randn(1, 128, 4, 6)
    sizes = [previewer.decode_latent_to_preview_image("JPEG", x0)[1].size for _ in range(3)]
    assert sizes == [(24, 16), (24, 16), (12, 8)] and previewer.render.finest == 1
    assert not previewer.render.step_down()  # the /8 rung is the coarsest: it stays, throttled


def test_auto_never_uses_the_tiny_decoder_without_a_neural_previewer(lp, preview_rungs, monkeypatch):
    monkeypatch.setattr(live_preview, "_has_tiny_decoder", lambda space: True)
    label = lp.get_previewer("cpu", fake_comfy.Flux2()).label
    assert "tiny" not in label and "fitted factors" in label


def test_auto_gives_a_sana_format_of_a_newer_host_the_neural_previewer(lp):
    sana = type("Sana", (), {"latent_channels": 32, "latent_dimensions": 2})()
    previewer = lp.get_previewer("cpu", sana)
    assert previewer.label == "sana by the neural previewer"
    assert previewer.decode_latent_to_preview(torch.randn(1, 32, 3, 4)).size == (4, 3)


@pytest.mark.parametrize(("max_size", "scale"), [(32, 1), (512, 2)], ids=["/8 rung", "/4 rung"])
def test_auto_preview_of_taef2_encoded_photos_scores_28_db_against_the_photo_averaged_over_8x8_cells(
        lp, monkeypatch, max_size, scale):
    """The live preview's acceptance: 28 dB on average over the bundled photos at 8x8 cells (a finer rung's frame is
    averaged to the same cells); the /8 rung also holds it for every photo, the /4 rung's worst photo is 27.98 dB."""
    monkeypatch.setenv(live_preview.ENV_SIZE, str(max_size))
    encoder = tiny.load(shared_file("taef2_encoder.pth"), space="flux2")
    previewer = lp.get_previewer("cpu", fake_comfy.Flux2())
    scores = []
    for path in sorted(EXAMPLES.glob("*.jpg")):
        photo = as_tensor(Image.open(path).convert("RGB"))[None]
        x0 = encoder.encode(photo, domain="model")
        frame = as_tensor(previewer.decode_latent_to_preview(x0))[None]
        assert frame.shape[-2:] == (photo.shape[-2] * scale // 8, photo.shape[-1] * scale // 8)
        grid = (photo.shape[-2] // 8, photo.shape[-1] // 8)
        scores.append(float(preview.psnr(preview.area_target(frame, grid), preview.area_target(photo, grid))[0]))
    assert sum(scores) / len(scores) >= 28, scores
    assert min(scores) >= (28 if scale == 1 else 27.5), scores


def test_latent2rgb_uses_fitted_factors_from_vae_approx_else_comfyuis(lp, monkeypatch, comfy):
    use(monkeypatch, "latent2rgb")
    assert isinstance(lp.get_previewer("cpu", fake_comfy.SD15()), fake_comfy.CorePreviewer)
    fitted = preview.Factors(torch.randn(4, 3) * 0.3, torch.zeros(3), "affine", "sd1")
    preview.save_factors(vae_approx(comfy) / "factors-SD15.safetensors", {"affine": fitted}, space="sd1", default="affine")
    previewer = lp.get_previewer("cpu", fake_comfy.SD15())
    assert isinstance(previewer, live_preview.LivePreviewer) and "fitted factors" in previewer.label
    x0 = torch.randn(1, 4, 5, 7)
    got = as_tensor(previewer.decode_latent_to_preview(x0))
    assert (got - preview.preview(x0, "sd1", domain="model", factors=fitted)[0]).abs().max() <= 0.5 / 255 + 1e-6


def test_latent2rgb_for_flux2_uses_the_factors_latentbridge_ships(lp, monkeypatch):
    use(monkeypatch, "latent2rgb")
    previewer = lp.get_previewer("cpu", fake_comfy.Flux2())
    assert isinstance(previewer, live_preview.LivePreviewer) and "factors-flux2" in previewer.label


def test_taesd_uses_the_tiny_decoder_in_vae_approx_at_full_size(lp, monkeypatch, comfy):
    use(monkeypatch, "taesd")
    (vae_approx(comfy) / "taef2_decoder.pth").symlink_to(shared_file("taef2_decoder.pth"))
    tiny.clear_cache()
    previewer = lp.get_previewer("cpu", fake_comfy.Flux2())
    assert "tiny decoder taef2" in previewer.label
    assert previewer.decode_latent_to_preview(torch.randn(1, 128, 2, 3)).size == (48, 32)


def test_taesd_without_the_decoder_file_falls_to_fitted_factors(lp, monkeypatch):
    use(monkeypatch, "taesd")
    monkeypatch.setattr(live_preview, "_has_tiny_decoder", lambda space: False)
    assert "fitted factors" in lp.get_previewer("cpu", fake_comfy.Flux2()).label


def test_without_fitted_factors_comfyuis_factors_show_every_item_of_a_batch(lp, monkeypatch):
    for method in ("auto", "latent2rgb"):
        use(monkeypatch, method)
        previewer = lp.get_previewer("cpu", fake_comfy.SDXL())
        assert previewer.label == "sdxl by ComfyUI's factors (ComfyUI's SDXL factors)"
    x0 = torch.randn(2, 4, 3, 5)
    image = as_tensor(previewer.decode_latent_to_preview(x0))
    fmt = fake_comfy.SDXL()
    weight, bias = torch.tensor(fmt.latent_rgb_factors), torch.tensor(fmt.latent_rgb_factors_bias)
    core = ((torch.einsum("chw,ck->khw", x0[1], weight) + bias[:, None, None] + 1) / 2).clamp(0, 1)  # as latent2rgb
    assert image.shape == (3, 3, 2 * 5 + live_preview.GAP)
    assert (image[:, :, 5 + live_preview.GAP:] - core).abs().max() <= 0.5 / 255 + 1e-6


def test_taesd_leaves_comfyuis_own_tiny_decoder_alone_where_its_file_is_there(lp, monkeypatch, comfy):
    use(monkeypatch, "taesd")
    monkeypatch.setattr(live_preview, "_has_tiny_decoder", lambda space: False)
    assert "ComfyUI's factors" in lp.get_previewer("cpu", fake_comfy.SDXL()).label  # ComfyUI would fall back too
    (vae_approx(comfy) / "taesdxl_decoder.pth").write_bytes(b"")
    assert isinstance(lp.get_previewer("cpu", fake_comfy.SDXL()), fake_comfy.CorePreviewer)


def test_unknown_latent_format_gets_comfyuis_previewer(lp):
    assert isinstance(lp.get_previewer("cpu", fake_comfy.Mystery()), fake_comfy.CorePreviewer)


def test_batch_shows_as_a_grid_of_every_item(lp):
    previewer = lp.get_previewer("cpu", fake_comfy.Flux2())
    x0 = torch.randn(3, 128, 4, 6)
    image = as_tensor(previewer.decode_latent_to_preview(x0))
    gap = live_preview.GAP
    _, rung = neural.pick("flux2", 12, 256)  # two tiles a row in 512 pixels
    items = preview.preview(x0, "flux2", method="neural", domain="model", previewer=rung)
    h, w = items.shape[-2:]
    assert image.shape == (3, 2 * h + gap, 2 * w + gap)
    assert (image[:, h + gap:, :w] - items[2]).abs().max() <= 0.5 / 255 + 1e-6
    assert image[:, h + gap:, w + gap:].max() == 0  # the empty cell of a 2 x 2 grid


def test_video_latent_shows_a_strip_of_frames_per_item(lp, comfy, monkeypatch):
    fitted = preview.Factors(torch.randn(16, 3) * 0.2, torch.zeros(3), "affine", "wan21")
    preview.save_factors(vae_approx(comfy) / "factors-Wan21.safetensors", {"affine": fitted}, space="wan21",
                         default="affine")
    monkeypatch.setenv(live_preview.ENV_FRAMES, "4")
    previewer = lp.get_previewer("cpu", fake_comfy.Wan21())
    x0 = torch.randn(2, 16, 9, 4, 6)
    image = as_tensor(previewer.decode_latent_to_preview(x0))
    gap = live_preview.GAP
    assert image.shape == (3, 2 * 4 + gap, 4 * 6 + 3 * gap)
    last = preview.preview(x0[1:, :, 8:], "wan21", domain="model", factors=fitted).reshape(3, 4, 6)
    assert (image[:, 4 + gap:, 3 * (6 + gap):] - last).abs().max() <= 0.5 / 255 + 1e-6
    assert live_preview.frame_indices(9, 4) == [0, 3, 5, 8]


def test_large_previews_shrink_to_the_configured_size(lp, monkeypatch):
    monkeypatch.setenv(live_preview.ENV_SIZE, "20")
    previewer = lp.get_previewer("cpu", fake_comfy.Flux2())
    _, image, size = previewer.decode_latent_to_preview_image("JPEG", torch.randn(4, 128, 8, 8))
    assert size == 20 and max(image.size) == 20


def test_expensive_previews_are_throttled_to_the_budget(lp, monkeypatch):
    # start and end of each preview made, the start of each one skipped
    clock = iter([0.0, 5.0, 5.0, 6.0, 6.5, 10.0, 11.0])
    monkeypatch.setattr(live_preview.time, "perf_counter", lambda: next(clock))
    monkeypatch.setenv(live_preview.ENV_BUDGET, "0.25")
    previewer = lp.get_previewer("cpu", fake_comfy.Flux2())
    x0 = torch.randn(1, 128, 2, 2)
    assert previewer.decode_latent_to_preview_image("JPEG", x0) is not None  # 5 s with loading: not a step's cost
    assert previewer.decode_latent_to_preview_image("JPEG", x0) is not None  # took 1 s: the next one after 4 s
    assert previewer.decode_latent_to_preview_image("JPEG", x0) is None
    assert previewer.decode_latent_to_preview_image("JPEG", x0) is not None


def test_a_failing_previewer_falls_back_to_comfyuis_once_with_one_log_line(lp, caplog):
    previewer = lp.get_previewer("cpu", fake_comfy.Flux2())
    previewer.render = lambda x: (_ for _ in ()).throw(RuntimeError("boom"))
    x0 = torch.randn(1, 128, 2, 2)
    with caplog.at_level(logging.WARNING, logger="latentbridge"):
        first = previewer.decode_latent_to_preview_image("JPEG", x0)
        second = previewer.decode_latent_to_preview_image("JPEG", x0)
    assert first == second == ("JPEG", "core preview", 512)
    assert len(previewer.core().shown) == 2
    assert [r.getMessage() for r in caplog.records if "boom" in r.getMessage()] == [caplog.records[0].getMessage()]
    assert len(caplog.records) == 1


def test_wrapper_passes_newer_comfyui_arguments_to_comfyuis_get_previewer(lp, monkeypatch):
    seen = []
    module = fake_comfy.install_previews(monkeypatch)
    module.get_previewer = lambda device, latent_format, *a, **kw: seen.append((a, kw))
    live_preview.install(module)
    module.get_previewer("cpu", fake_comfy.Mystery(), "extra", compile_preview=True)
    assert seen == [(("extra",), {"compile_preview": True})]


def test_frontend_setting_switches_the_previews_through_the_route(lp, monkeypatch):
    aiohttp = types.ModuleType("aiohttp")
    aiohttp.web = types.SimpleNamespace(json_response=lambda data: data)
    monkeypatch.setitem(sys.modules, "aiohttp", aiohttp)
    class Routes:
        def __init__(self):
            self.handlers = {}

        def post(self, path):
            return lambda handler: self.handlers.setdefault(path, handler)

    class Request:
        def __init__(self, body):
            self.body = body

        async def json(self):
            return self.body

    server = type("Server", (), {"routes": Routes()})()
    assert live_preview.add_route(server) and not live_preview.add_route(server)
    handler = server.routes.handlers[live_preview.ROUTE]
    assert asyncio.run(handler(Request({"enabled": False}))) == {"enabled": False}
    assert isinstance(lp.get_previewer("cpu", fake_comfy.Flux2()), fake_comfy.CorePreviewer)
    asyncio.run(handler(Request({"enabled": True})))
    assert isinstance(lp.get_previewer("cpu", fake_comfy.Flux2()), live_preview.LivePreviewer)


def test_pack_ships_the_frontend_setting():
    from latentbridge.integrations.comfyui import WEB_DIRECTORY

    script = (Path(WEB_DIRECTORY) / "latentbridge_live_preview.js").read_text()
    assert live_preview.ROUTE in script and "registerExtension" in script
