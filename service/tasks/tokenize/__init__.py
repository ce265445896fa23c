"""Tokenization alone, without running the model: POST /tokenize."""
