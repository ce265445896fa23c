"""onnxruntime sessions, providers and threads, and the tokenizer. Never imports torch."""
