"""ggtqc: quality control for generated LQ/HQ image-restoration pairs."""

from importlib.metadata import PackageNotFoundError, version

from ggtqc.filters import Field, Filter, PairFilter, Scores, WeightFile
from ggtqc.hookspecs import hookimpl

try:
    __version__ = version("ggtqc")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Field", "Filter", "PairFilter", "Scores", "WeightFile", "hookimpl", "__version__"]
