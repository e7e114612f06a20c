"""Core messages in ComfyUI's words: the node's input names for Python parameters, ComfyUI's model folders for
weight files, and no command-line text.

Core errors name Python parameters (``space=``, ``fit="pad"``, ``method="linear"``) and, in a few older messages,
the CLI's flags and commands; a ComfyUI user can only change a node's inputs and the files in ``models/``. Each node
method is wrapped with :func:`node_errors`, which re-raises a latentbridge error (same type) with its message passed
through :func:`comfy_words`. A missing weight file is reworded from what the error says it looked for
(:class:`~latentbridge.errors.WeightsNotFoundError`'s ``filenames`` and ``folder``), naming ComfyUI's folders for it
and the file to put there.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from latentbridge.errors import LatentBridgeError, WeightsNotFoundError

# Python parameter (or CLI flag) -> the node input that holds the same setting, when a node does not say otherwise
INPUTS = {"space": "space", "fit": "fit", "method": "method", "source": "source", "target": "target",
          "from": "source", "to": "target", "from_space": "source", "to_space": "target", "size": "size",
          "model": "model", "scale": "scale_by", "scale_by": "scale_by", "width": "width", "height": "height",
          "sampler": "sampler", "steps": "steps", "denoise": "denoise", "schedule": "schedule", "blend": "blend",
          "alpha_1": "alpha_1", "seed": "seed"}
# parameters that mean nothing in ComfyUI: its LATENTs are always in the raw domain, files are never overwritten
_DROPPED = ("domain", "overwrite", "device", "dtype", "models_dir", "download")
_COMMANDS = (  # CLI commands -> what does the same in ComfyUI
    (r"latentbridge fit-preview", "the Fit Preview Factors node"),
    (r"latentbridge info", "the Latent Info node"),
    (r"latentbridge spaces", "the node's space list"),
    (r"latentbridge train", "latentbridge's trainer (outside ComfyUI)"),
    (r"latentbridge [a-z][a-z-]*", "latentbridge's tools outside ComfyUI"),
)
_VALUE = r"""(?:'[^']*'|"[^"]*"|\.\.\.|[\w.\-/]+)"""


def _input(name: str, inputs: Mapping[str, str]) -> str | None:
    key = name.replace("-", "_")
    return inputs.get(key, INPUTS.get(key))


def _setting(match: re.Match, inputs: Mapping[str, str], verb: bool) -> str:
    """``pass space='sdxl'`` -> ``set the node's 'space' input to sdxl``; ``--space sdxl`` -> ``the node's 'space'
    input (sdxl)``."""
    name = match.group("name") or match.group("flag")
    value = (match.group("value") or match.group("fvalue") or "").strip("'\"")
    value = "" if value == "..." else value
    node_input = _input(name, inputs)
    what = f"the node's '{node_input}' input" if node_input else f"the {name.replace('-', '_')} setting"
    if verb:
        return f"set {what}" + (f" to {value}" if value else "")
    return what + (f" ({value})" if value else "")


def comfy_words(message: str, inputs: Mapping[str, str] | None = None) -> str:
    """``message`` with Python parameters and CLI flags named as the node's inputs (``inputs`` maps a parameter to the
    node's input where it differs from :data:`INPUTS`) and CLI commands as the ComfyUI node that does the same."""
    inputs = dict(inputs or {})
    dropped = "|".join(_DROPPED)
    text = re.sub(rf"\s*\((?:and )?(?:{dropped})=[^)]*\)", "", message)
    text = re.sub(rf"(?:,? (?:and|or) )?\b(?:{dropped})={_VALUE}?", "", text)
    for pattern, words in _COMMANDS:
        text = re.sub(rf"'{pattern}[^']*'|{pattern}(?: --?[\w-]+(?: [\w./<>*-]+)?)*", words, text)
    setting = (rf"(?:(?<![\w/.-])--(?P<flag>[a-z][a-z0-9-]*)(?: (?P<fvalue>(?!or\b|and\b|to\b){_VALUE}))?"
               rf"|(?<![\w.])(?P<name>[a-z_][a-z0-9_]*)=(?P<value>{_VALUE})?)")
    # "pass fit='pad' (...) or fit='crop'": the second value of the same setting needs no second name
    text = re.sub(rf"(\b(?:pass|use|give|set) ([a-z_][a-z0-9_]*)={_VALUE}(?: \([^)]*\))?) or \2=", r"\1 or ", text)
    text = re.sub(rf"\b(?:pass|use|give|set) {setting}", lambda m: _setting(m, inputs, True), text)
    text = re.sub(setting, lambda m: _setting(m, inputs, False), text)
    return re.sub(r"\(\s*\)", "", re.sub(r"  +", " ", text)).strip()


def missing_weights(error: WeightsNotFoundError) -> str | None:
    """A missing weight file in ComfyUI's words: its folders there (the ones the user can fill, each once) and the
    file to put in them; None when the error does not say what it looked for."""
    filenames, folder = getattr(error, "filenames", ()), getattr(error, "folder", None)
    if not filenames or not folder:
        return None
    try:
        from latentbridge.integrations.comfyui import models

        folders = list(dict.fromkeys(models.folder_paths().get_folder_paths(folder)))
    except (LatentBridgeError, KeyError):
        folders = []
    where = f" ({', '.join(folders)})" if folders else ""
    alternatives = f" (or {' or '.join(filenames[1:])})" if len(filenames) > 1 else ""
    published = re.search(r"\bGet \S.*$", str(error))  # where the file is published, when the core says
    return (f"{filenames[0]}{alternatives} is not in ComfyUI's {folder} folders{where}: put {filenames[0]} in "
            f"models/{folder}, or name its folder under '{folder}:' in extra_model_paths.yaml, then refresh"
            + (f". {published.group(0)}" if published else ""))


def translated(error: LatentBridgeError, inputs: Mapping[str, str] | None = None) -> LatentBridgeError:
    """The same kind of error with its message in ComfyUI's words."""
    message = missing_weights(error) if isinstance(error, WeightsNotFoundError) else None
    message = message or comfy_words(str(error), inputs)
    try:
        new = type(error)(message)
    except TypeError:  # an error type that needs more than a message keeps its own
        return error
    return new


def node_errors(inputs: Mapping[str, str] | None = None) -> Callable[[Callable], Callable]:
    """Decorate a node method so that latentbridge errors it raises speak ComfyUI (see :func:`comfy_words`)."""

    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except LatentBridgeError as e:
                raise translated(e, inputs) from e

        return run

    return wrap
