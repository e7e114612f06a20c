"""Errors in Python's words: core code names parameters (``space=``, ``fit='pad'``), never the CLI's ``--flags``;
the CLI translates parameters into its own flags in one place."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

import latentbridge
from latentbridge.cli import build_parser, command_options, in_flags

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
