"""Errors the shells turn into a one-line message and a non-zero exit."""

from pathlib import Path


class AutofunscriptError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ScriptFormatError(AutofunscriptError):
    """A funscript that cannot be read."""


class VideoError(AutofunscriptError):
    """A video that cannot be opened or decoded."""


def input_file_size(path: Path, error: type[AutofunscriptError], kind: str) -> int:
    """Size of an input file, or `error` naming the file: missing, unreadable or a directory."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    if path.is_dir():
        raise error(f"{path}: is a directory, not {kind}")
    return size
