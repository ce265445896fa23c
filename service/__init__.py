"""bertserve: serve fine-tuned BERT-family models exported to ONNX over HTTP."""

from importlib.metadata import PackageNotFoundError, version

# The one version is pyproject.toml's, read from the installed package's metadata.
try:
    __version__ = version("bertserve")
except PackageNotFoundError:  # a source tree run without being installed
    __version__ = "0+unknown"
