"""ggtqc: quality control for generated LQ/HQ image-restoration pairs."""

from importlib.metadata import PackageNotFoundError, version

from ggtqc.filters import Field, Filter, PairFilter, PairScores, Scores, WeightFile
from ggtqc.hookspecs import hookimpl

try:
    __version__ = version("ggtqc")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_API = ("filter_pairs", "list_filters", "create_filter")

__all__ = ["Field", "Filter", "PairFilter", "PairScores", "Scores", "WeightFile", "hookimpl", "__version__", *_API]


def __getattr__(name: str):
    """The library layer (``ggtqc.api``), imported on first use: a plugin that imports
    ``ggtqc`` for ``Filter`` does not pay for torch and the runner."""
    if name in _API:
        from ggtqc import api

        return getattr(api, name)
    raise AttributeError(f"module 'ggtqc' has no attribute {name!r}")
