"""Reranking texts against a query: POST /rerank and Cohere's POST /v2/rerank."""
