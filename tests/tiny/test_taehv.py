import pytest
import torch

from latentbridge.tiny import arch, taehv

LAYOUTS = {
    "taew2_1": taehv.VideoLayout("base", 16, 1, (2, 2, 1), (1, 2, 2)),
    "taew2_2": taehv.VideoLayout("base", 48, 2, (2, 2, 1), (1, 2, 2)),
    "taehv1_5_super": taehv.VideoLayout("super", 32, 2, (2, 2, 1), (1, 2, 2)),
    "taeltx_2": taehv.VideoLayout("base", 128, 4, (2, 2, 2), (2, 2, 2)),
    "taeltx2_3_wide": taehv.VideoLayout("wide", 128, 4, (2, 2, 2), (2, 2, 2)),
    "taesdv": taehv.VideoLayout("taesdv", 4, 1, (), ()),
}


def _state(layout: taehv.VideoLayout, *, encoder: bool = True, decoder: bool = True) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        halves = [("encoder", taehv.encoder(layout))] * encoder + [("decoder", taehv.decoder(layout))] * decoder
        return {f"{p}.{k}": v for p, net in halves for k, v in net.state_dict().items()}


@pytest.mark.parametrize("name", LAYOUTS)
def test_identify_reads_every_published_layout_from_keys_and_shapes(name):
    layout = LAYOUTS[name]
    assert taehv.is_video(_state(layout))
    assert taehv.identify(*taehv.split(_state(layout))) == layout
    assert taehv.identify(*taehv.split(_state(layout, encoder=False))) == layout  # upstream's default time factor


def test_published_decoder_indices_match_comfyui_detection_key():
    # ComfyUI tells TAEHV files apart by decoder.22.bias (docs/taehv.md): base and super decoders both end at 22
    for name in ("taew2_1", "taehv1_5_super"):
        assert "decoder.22.bias" in _state(LAYOUTS[name])


def test_taesd_image_files_are_not_video():
    with torch.device("meta"):
        state = {f"encoder.{k}": v for k, v in arch.encoder(4).state_dict().items()}
        state |= {f"decoder.{k}": v for k, v in arch.decoder(4).state_dict().items()}
    assert not taehv.is_video(state)


def test_wrappers_around_the_keys_are_removed():
    state = {f"module._orig_mod.{k}": v for k, v in _state(LAYOUTS["taew2_1"]).items()}
    assert taehv.identify(*taehv.split(state)) == LAYOUTS["taew2_1"]


def test_time_factors_and_downscale_follow_the_layout():
    ltx = LAYOUTS["taeltx_2"]
    assert (ltx.time_downscale, ltx.time_upscale, ltx.downscale) == (8, 8, 32)
    assert (LAYOUTS["taew2_2"].time_upscale, LAYOUTS["taew2_2"].downscale) == (4, 16)


def test_fit_state_keeps_the_last_frame_of_a_wider_tgrow_and_lists_what_does_not_fit():
    layout = LAYOUTS["taew2_1"]
    _, dec = taehv.split(_state(layout))
    dec = {k: torch.zeros(v.shape) for k, v in dec.items()}
    dec["7.conv.weight"] = torch.arange(512.0).reshape(512, 1, 1, 1).expand(512, 256, 1, 1)  # stored doubling
    fitted = taehv.fit_state(layout, "decoder", dec)
    assert fitted["7.conv.weight"].shape == (256, 256, 1, 1) and fitted["7.conv.weight"][0, 0, 0, 0] == 256
    del dec["9.conv.2.weight"]
    dec["1.weight"] = torch.zeros(256, 8, 3, 3)
    with pytest.raises(ValueError, match=r"missing 9\.conv\.2\.weight; wrong shape 1\.weight \(256, 8, 3, 3\)"):
        taehv.fit_state(layout, "decoder", dec)
