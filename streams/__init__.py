"""valuestream: real-time customer value profiles from shop events on Kafka."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("valuestream")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
