"""Checkpoint -> verified ONNX model directory. The only code that imports torch/transformers."""

from service.export.errors import ExportError

__all__ = ["ExportError"]
