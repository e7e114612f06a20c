"""Errors in Python's words: core code names parameters (``space=``, ``fit='pad'``), never the CLI's ``--flags``;
the CLI translates parameters into its own flags in one place."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest
import torch

import latentbridge
from latentbridge import interposer, mixing, preview, tiny, upscale
from latentbridge.cli import build_parser, command_options, in_flags
from latentbridge.errors import InputError
from latentbridge.tiny import TinyAutoencoder, arch

PACKAGE = Path(latentbridge.__file__).parent
EDGES = ("cli", "integrations")  # the layers that speak to a user in their own words
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
STRINGS = {tokenize.STRING, *(getattr(tokenize, n) for n in ("FSTRING_MIDDLE",) if hasattr(tokenize, n))}


def core_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in EDGES)


def test_no_string_in_core_names_a_cli_flag():
    found = []
    for path in core_modules():
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if token.type in STRINGS and FLAG.search(token.string):
                found.append(f"{path.relative_to(PACKAGE)}:{token.start[0]}: {FLAG.search(token.string).group()}")
    assert core_modules()
    assert not found, "core text names CLI flags (name the parameter, e.g. space=):\n" + "\n".join(found)


def _options(*argv: str) -> dict:
    parser = build_parser()
    return command_options(parser, parser.parse_args(list(argv)))


@pytest.mark.parametrize(("argv", "message", "said"), [
    (["encode", "x", "-o", "y"], "pass fit='pad' (edges) or fit='crop'", "pass --fit pad (edges) or --fit crop"),
    (["preview", "x", "-o", "y"], "size=0 is not", "--size 0 is not"),
    (["preview", "x", "-o", "y"], "allow overwriting with overwrite=True.", "allow overwriting with --overwrite."),
    (["preview", "x", "-o", "y"], "duration_ms=-5 is not", "--duration -5 is not"),
    (["upscale", "x", "-o", "y"], "use a smaller scale= or size=, or", "use a smaller --scale or --width/--height, or"),
    (["upscale", "x", "-o", "y"], 'method="linear" and scale=1e+06.', "--method linear and --scale 1e+06."),
    (["convert", "x", "--to", "sd1"], "say which with space= (and domain=)", "say which with --from (and --domain)"),
    (["convert", "x", "--to", "sd1"], "check the source space (src=) and dst=", "check the source space (--from) and --to"),
    (["plot-schedule", "-o", "y"], "got minimum=0.5, maximum=0.2", "got --min 0.5, --max 0.2"),
    (["plot-schedule", "-o", "y"], "alpha_1=nan; myspace= and a=3 stay", "--alpha-1 nan; myspace= and a=3 stay"),
])
def test_the_cli_names_its_own_flags_for_core_parameters(argv, message, said):
    assert in_flags(message, _options(*argv)) == said


def _tiny() -> TinyAutoencoder:
    return TinyAutoencoder(variant="standard", latent_channels=4, encoder=arch.encoder(4), decoder=arch.decoder(4))


MISUSE = {
    "upscale method=123": (lambda: upscale.upscale(torch.randn(1, 4, 8, 8), "sd1", 2, method=123), "method 123"),
    "upscale scale='2'": (lambda: upscale.upscale(torch.randn(1, 4, 8, 8), "sd1", "2", method="area"), "scale='2'"),
    "preview size='12'": (lambda: preview.preview(torch.randn(1, 4, 8, 8), "sd1", size="12"), "size='12'"),
    "convert below one target pixel": (lambda: interposer.convert(torch.randn(1, 128, 1, 1), "flux2", "sana",
                                                                  domain="model"), "smaller than one sana latent pixel"),
    "denoiser of the wrong shape": (lambda: mixing.sample(lambda x, s: x[:, :2], torch.randn(1, 4, 8, 8),
                                                          torch.linspace(1, 0, 3), prediction="flow", disable=True),
                                    "the denoiser returned (1, 2, 8, 8) for a latent of shape (1, 4, 8, 8)"),
    "schedule minimum='a'": (lambda: mixing.schedule("cosine", 3, minimum="a"), "minimum='a' is not a number"),
    "tiny decode tile=1.5": (lambda: _tiny().decode(torch.randn(1, 4, 4, 4), tile=1.5), "tile=1.5"),
    "tiny encode fit='foo'": (lambda: _tiny().encode(torch.rand(1, 3, 16, 16), fit="foo"), "unknown fit 'foo'"),
    "tiny.load dtype='float16'": (lambda: tiny.load("taesd", dtype="float16"), "dtype='float16'"),
}


@pytest.mark.parametrize(("call", "said"), list(MISUSE.values()), ids=list(MISUSE))
def test_misusing_the_python_api_raises_the_projects_error_not_torchs(call, said):
    with pytest.raises(InputError) as e:
        call()
    assert said in str(e.value)
