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

# Core errors name Python parameters (``space=``, ``fit='pad'``, ``scale=1e6``); the CLI's messages name its options
# instead. A parameter becomes the option of the running command whose destination has its name, or the entry here.
PARAMETER_FLAGS = {"space": "--space", "domain": "--domain"}
# Core parameters that a command spells differently: command -> parameter -> option(s).
COMMAND_FLAGS = {
    "convert": {"src": "--from", "dst": "--to"},
    "preview": {"duration_ms": "--duration"},
    "upscale": {"size": "--width/--height"},
    "train": {"extra_sizes": "dataset build --extra-sizes"},
}
_PARAMETER = re.compile(r"(?<![\w.-])(?P<name>[a-z][a-z0-9_]*)=(?:(?P<value>'[^']*'|\"[^\"]*\"|\([^()]*\)"
                        r"|-?\w+(?:[.+-]\w+)*)|(?=[\s),.;:]|$))")
_QUOTES = "'\""


def in_flags(message: str, options: dict[str, tuple[str, bool]] | None = None) -> str:
    """``message`` with each core ``name=value`` written as the CLI option: ``fit='pad'`` -> ``--fit pad``,
    ``overwrite=True`` -> ``--overwrite``, a bare ``space=`` -> ``--space``. ``options`` maps parameter names to
    (option, takes a value) for the running command (:func:`command_options`); names in neither stay as they are."""
    known = {name: (flag, True) for name, flag in PARAMETER_FLAGS.items()} | (options or {})

    def flag(m: re.Match) -> str:
        name, value = m.group("name"), m.group("value")
        if name not in known:
            return m.group(0)
        option, takes_value = known[name]
        if value is None or not takes_value:
            return option
        return f"{option} {value.strip(_QUOTES) if value[:1] in _QUOTES else value}"

    return _PARAMETER.sub(flag, message)


def command_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, tuple[str, bool]]:
    """Parameter name -> (long option, takes a value) for the (sub)command ``args`` ran, from its parser."""
    command = parser
    names: list[str] = []
    while True:
        sub = next((a for a in command._actions if isinstance(a, argparse._SubParsersAction)), None)
        chosen = getattr(args, sub.dest, None) if sub else None
        if chosen is None:
            break
        names.append(chosen)
        command = sub.choices[chosen]
    found = {}
    for action in command._actions:
        long = [s for s in action.option_strings if s.startswith("--")]
        if long and action.dest != "help":
            found[action.dest] = (long[0], action.nargs != 0)
    for name, option in COMMAND_FLAGS.get(" ".join(names), {}).items():
        found[name] = (option, True)
    return found


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


def _one_line(message: str) -> str:
    """``message`` on one line: a line break (in a file name, say) is written as ``\\n``."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run one command; 0 on success, 2 on bad input with one ``error:`` line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    received: list[int] = []  # signals that arrived while the command ran
    try:
        with _signals_raise(received):
            return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader stopped early (`latentbridge info X | head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush at exit
        os.close(devnull)
        return 0
    except (LatentBridgeError, OSError) as e:
        if received:
            return _interrupted(received[0])
        if args.debug:
            traceback.print_exc()
        message = in_flags(str(e), command_options(parser, args)) if isinstance(e, LatentBridgeError) else (
            f"{e.strerror or e}: {e.filename or ''}".rstrip(": "))
        sys.stderr.write(f"error: {_one_line(message)}\n")
        return 2
    except (KeyboardInterrupt, Stopped):
        return _interrupted(received[0] if received else signal.SIGINT)
    except Exception:
        if not received:
            raise
        return _interrupted(received[0])  # a library turned the signal's exception into its own (numpy does)


def _interrupted(signum: int) -> int:
    io.remove_partials()
    sys.stderr.write(f"error: interrupted by {signal.Signals(signum).name}; unfinished files were removed\n")
    return 128 + signum


class Stopped(BaseException):
    """SIGTERM or SIGHUP, raised where the program was, so unfinished writes remove their temporary files."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise(received: list[int]) -> Iterator[None]:
    """While a command runs, SIGTERM and SIGHUP raise :class:`Stopped` and SIGINT KeyboardInterrupt (unless it is
    ignored, as in a background job); each is noted in ``received``, since a library may replace the exception."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)

    caught = [signal.SIGTERM, signal.SIGHUP]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        caught.append(signal.SIGINT)
    previous = {s: signal.signal(s, stop) for s in caught}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
