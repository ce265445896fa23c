"""bertserve: serve fine-tuned BERT-family models exported to ONNX over HTTP."""

__version__ = "0.1.0"
