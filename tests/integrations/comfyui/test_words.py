"""Node errors in ComfyUI's words: node inputs for Python parameters and CLI flags, ComfyUI's folders for missing
weights, and the right file to add."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from latentbridge import tiny, weights
from latentbridge.errors import AmbiguousError, InputError, WeightsNotFoundError
from latentbridge.integrations.comfyui import models
from latentbridge.integrations.comfyui.tiny import TinyVAEDecode, TinyVAELoader
from latentbridge.integrations.comfyui.words import comfy_words, node_errors
from latentbridge.tiny.layouts import build

CLI = re.compile(r"--[a-z]|latentbridge (?:fit-preview|train|info|spaces|convert|preview|dataset|upscale)")

CORE_MESSAGES = [  # what core says (in Python's words, and a few older CLI words) -> what the node must say
    ("cannot tell which space this latent is from: sd1 (raw, 44%), sdxl (raw, 33%). Say which with space= "
     "(and domain=)", "Say which with the node's 'space' input"),
    ("image size 9x9 is not a multiple of 8: resize it, or pass fit='pad' (replicate edges to 16x16) or "
     "fit='crop' (8x8)", "set the node's 'fit' input to pad (replicate edges to 16x16) or 'crop' (8x8)"),
    ("image size 9x9: resize it, or pass fit='pad' (--fit pad: replicate edges to 16x16)", "the node's 'fit' input"),
    ("sana has no built-in preview factors: fit some with 'latentbridge fit-preview --space sana' and pass them with "
     "--factors (or use --method tiny/neural)", "fit some with the Fit Preview Factors node"),
    ("x.safetensors: not an upscaler; train one with 'latentbridge train configs/upscaler-*.toml'",
     "train one with latentbridge's trainer (outside ComfyUI)"),
    ("Check --space, or see 'latentbridge info' for what the file holds", "see the Latent Info node"),
    ("unknown method 'foo': use method='linear'", "set the node's 'method' input to linear"),
]


@pytest.mark.parametrize(("message", "said"), CORE_MESSAGES)
def test_core_messages_name_node_inputs_and_nodes_never_flags_or_commands(message, said):
    text = comfy_words(message)
    assert said in text and not CLI.search(text) and "=" not in text


def test_a_node_can_name_its_own_input_for_a_parameter():
    assert comfy_words("Say which with space=", {"space": "source"}) == "Say which with the node's 'source' input"


def test_node_errors_keep_the_error_type_and_translate_its_message():
    @node_errors()
    def node():
        raise AmbiguousError("cannot tell: say which with space= (and domain=)")

    with pytest.raises(AmbiguousError) as caught:
        node()
    assert str(caught.value) == "cannot tell: say which with the node's 'space' input"


def test_missing_weights_name_comfyuis_folders_once_and_the_file_to_put_there(comfy, tmp_path):
    extra = tmp_path / "elsewhere" / "approx"  # a folder named under vae_approx: in extra_model_paths.yaml
    comfy.add_model_folder_path("vae_approx", str(extra))
    models.register_model_folders(comfy)

    @node_errors()
    def node():
        weights.resolve("taef2", filenames=("taef2_decoder.safetensors", "taef2_decoder.pth"), folder="vae_approx",
                        allow_download=False)

    with pytest.raises(WeightsNotFoundError) as caught:
        node()
    text = str(caught.value)
    default = comfy.get_folder_paths("vae_approx")[0]
    assert text.startswith("taef2_decoder.safetensors (or taef2_decoder.pth) is not in ComfyUI's vae_approx folders")
    assert f"{default}, {extra}" in text and "put taef2_decoder.safetensors in models/vae_approx" in text
    assert "vae_approx/vae_approx" not in text and "approx/vae_approx" not in text and not CLI.search(text)
    assert extra in weights.search_dirs("vae_approx") and extra / "vae_approx" not in weights.search_dirs("vae_approx")


def test_an_encoder_only_taesana_asks_for_its_own_decoder(comfy):
    folder = Path(comfy.get_folder_paths("vae_approx")[0])
    folder.mkdir(parents=True)
    save_file(build("encoder", "f32", 32).state_dict(), str(folder / "taesana_encoder.safetensors"))
    tiny.clear_cache()
    (model,) = TinyVAELoader().load("taesana_encoder.safetensors")["result"]
    with pytest.raises(InputError, match="has no decoder: put taesana_decoder.pth in models/vae_approx") as caught:
        TinyVAEDecode().decode({"samples": torch.zeros(1, 32, 2, 2)}, model)
    assert "taesd_decoder" not in str(caught.value)
    with pytest.raises(InputError, match="taesana_decoder"):
        model.decode(torch.zeros(1, 32, 2, 2))  # the core's own message names the space's file too
    tiny.clear_cache()


def test_a_missing_tiny_decoder_for_a_preview_names_its_files_and_where_they_are_published(comfy):
    models.register_model_folders(comfy)

    @node_errors()
    def node():
        tiny.load("taesana_decoder", download=False)

    with pytest.raises(WeightsNotFoundError) as caught:
        node()
    text = str(caught.value)
    assert text.startswith("taesana_decoder.pth is not in ComfyUI's vae_approx folders")
    assert "put taesana_decoder.pth in models/vae_approx" in text and "github.com/madebyollin/taesd" in text
    assert not CLI.search(text)
