"""modelwire: serve, train and store image models over one gRPC API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modelwire")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
