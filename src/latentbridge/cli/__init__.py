"""The ``latentbridge`` command line: one module per command group, each with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence

from .. import __version__, io
from ..errors import LatentBridgeError

# Core errors name Python parameters (``space=``); the CLI's messages name its flags instead.
PARAMETER_FLAGS = {"space": "--space", "domain": "--domain"}
_PARAMETER = re.compile(rf"\b({'|'.join(PARAMETER_FLAGS)})=(?=[\s),.;:]|$)")


def in_flags(message: str) -> str:
    """``message`` with each bare ``name=`` of :data:`PARAMETER_FLAGS` replaced by the CLI flag."""
    return _PARAMETER.sub(lambda m: PARAMETER_FLAGS[m.group(1)], message)


# Command groups, in the order ``--help`` lists them; each module may also define ``demo(out, ctx)``.
COMMAND_MODULES = ("base", "preview", "convert", "upscale", "train", "mixing", "tiny")


class Parser(argparse.ArgumentParser):
    """argparse with the project's error format: one ``error:`` line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message}; see '{self.prog} --help'\n")
        raise SystemExit(2)


def command_modules() -> list:
    return [importlib.import_module(f"{__name__}.{name}") for name in COMMAND_MODULES]


def build_parser() -> Parser:
    parser = Parser(prog="latentbridge", description="Work directly in the latent spaces of diffusion models.")
    parser.add_argument("--version", action="version", version=f"latentbridge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in command_modules():
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run one command; 0 on success, 2 on bad input with one ``error:`` line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _signals_raise():
            return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader stopped early (`latentbridge info X | head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush at exit
        os.close(devnull)
        return 0
    except (LatentBridgeError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        message = in_flags(str(e)) if isinstance(e, LatentBridgeError) else f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")
        sys.stderr.write(f"error: {message}\n")
        return 2
    except (KeyboardInterrupt, Stopped) as e:
        io.remove_partials()
        signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        sys.stderr.write(f"error: interrupted by {signal.Signals(signum).name}; unfinished files were removed\n")
        return 128 + signum


class Stopped(BaseException):
    """SIGTERM or SIGHUP, raised where the program was, so unfinished writes remove their temporary files."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """While a command runs, SIGTERM and SIGHUP raise :class:`Stopped` (SIGINT already raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
