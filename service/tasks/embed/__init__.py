"""Embeddings: POST /embed and OpenAI's POST /v1/embeddings."""
