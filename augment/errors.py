"""Domain errors. The library raises these; the CLI maps them to messages and exit codes."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AugmentError(Exception):
    """Base class for every error a user can cause and fix."""

    exit_code = 2


class RecipeError(AugmentError):
    """A recipe file is missing, malformed, or names an unknown transform or bad argument."""


class DatasetError(AugmentError):
    """The source dataset cannot be read as a labeled dataset."""


class OutputError(AugmentError):
    """The output folder cannot be used (overlaps the source, foreign content, not writable)."""


class RunFailed(AugmentError):
    """The run went through but made nothing useful (every train image rejected)."""


class ManifestError(AugmentError):
    """A manifest or run header is missing or malformed."""


class UnreadableImage(Exception):
    """A source file is not a decodable image; the message says why, for the manifest.
    Not an AugmentError: the file is rejected and the run goes on."""


class TooManyPixels(UnreadableImage):
    """A source's header declares more pixels than --max-pixels allows: unlike the other
    reasons, a verdict on the file and this run's option together."""


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)`, naming the closest of `choices`, or "" when none is close."""
    hint = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""
