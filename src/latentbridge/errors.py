"""The project's exception types: each message says what was wrong and what to do."""

from __future__ import annotations

from collections.abc import Sequence


class LatentBridgeError(Exception):
    """Base class for every error latentbridge raises on purpose."""


class InputError(LatentBridgeError, ValueError):
    """A tensor, file or option the caller passed cannot be used as given."""


class TooLargeError(InputError):
    """An input above a size limit: a picture over Pillow's decompression-bomb limit or the pixel limit."""


class UnknownSpaceError(LatentBridgeError, KeyError):
    """A latent-space name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsNotFoundError(LatentBridgeError, FileNotFoundError):
    """A named weight file could not be found anywhere it was looked for; ``filenames`` and ``folder`` (the model
    subfolder, e.g. ``vae_approx``) say what was looked for, so a host can say where to put it in its own words."""

    def __init__(self, message: str, *, filenames: Sequence[str] = (), folder: str | None = None) -> None:
        super().__init__(message)
        self.filenames, self.folder = tuple(filenames), folder


class WeightsFormatError(LatentBridgeError, ValueError):
    """A weight file exists but does not hold what was expected."""


class AmbiguousError(InputError):
    """Detection found several equally plausible answers and refuses to guess."""


class HubError(WeightsNotFoundError):
    """A published weight file could not be had from the Hugging Face hub (missing there, or unreachable)."""
