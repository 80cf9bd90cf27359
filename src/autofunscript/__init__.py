"""autofunscript: watch a video, write a funscript."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("autofunscript")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+src"
