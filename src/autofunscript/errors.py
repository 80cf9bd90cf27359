"""Errors the shells turn into a one-line message and a non-zero exit."""


class AutofunscriptError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ScriptFormatError(AutofunscriptError):
    """A funscript that cannot be read."""


class VideoError(AutofunscriptError):
    """A video that cannot be opened or decoded."""
