"""Latent Info: the text it shows for a LATENT."""

from __future__ import annotations

import torch

from latentbridge import spaces
from latentbridge.integrations.comfyui.common import SPACE_KEY
from latentbridge.integrations.comfyui.info import LatentInfo, describe


def test_latent_info_returns_the_text_as_ui_and_output_without_touching_the_input():
    latent = {"samples": torch.randn(2, 4, 8, 8) * 5, "noise_mask": torch.ones(1, 8, 8), "batch_index": [0, 1]}
    before = latent["samples"].clone()
    out = LatentInfo().info(latent, "sd1")
    assert out["ui"]["text"] == [out["result"][0]]
    assert torch.equal(latent["samples"], before) and set(latent) == {"samples", "noise_mask", "batch_index"}


def test_describe_shows_shape_space_image_size_both_domains_and_extras():
    text = describe({"samples": torch.randn(1, 4, 8, 12) * 5, "noise_mask": torch.ones(1, 8, 12),
                     "batch_index": [3]}, "sd1")
    assert "LATENT (1, 4, 8, 12) float32" in text
    assert "space: sd1" in text and "how the space was chosen: chosen on the node" in text and "64x96 px image" in text
    assert "raw domain: min" in text and "model domain: min" in text
    assert "channels (mean/std): 0:" in text and "noise_mask (1, 8, 12)" in text and "batch_index [3]" in text


def test_describe_uses_the_stated_space_and_detection():
    flux_raw = spaces.get("flux1").from_model(torch.randn(1, 16, 8, 8))
    assert "chosen: stated by the latent" in describe({"samples": torch.randn(1, 4, 8, 8), SPACE_KEY: "sdxl"})
    detected = describe({"samples": flux_raw})
    assert "space: flux1" in detected and "chosen: detected from the statistics" in detected and "99" in detected
    unknown = describe({"samples": torch.randn(1, 4, 8, 8) * 6})
    assert "space: not known" in unknown and "cannot tell" in unknown


def test_describe_reports_nonfinite_values_and_summarises_many_channels():
    samples = torch.randn(1, 128, 4, 4)
    samples[0, 0, 0, 0] = float("inf")
    text = describe({"samples": samples}, "flux2")
    assert "WARNING: 1 NaN or infinite values" in text and "(112 more)" in text
