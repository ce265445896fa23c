"""Explore load by hand: a realistic mix of single and batched /classify and /embed calls
drawn from real sentences (rotten_tomatoes) and reviews (IMDB).

  .venv/bin/locust -f loadtest/locustfile.py --host http://127.0.0.1:8000            # web UI on :8089
  .venv/bin/locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 \\
      --headless -u 32 -r 8 -t 60s --only-summary                                     # headless
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

from loadtest.texts import long_reviews, short_sentences

SHORT = short_sentences(512)
LONG = long_reviews(64)


class ServiceUser(FastHttpUser):  # type: ignore[misc]
    """Most calls are one short text; some are batches; a few carry long reviews."""

    wait_time = between(0.0, 0.05)

    def _post(self, path: str, body: dict[str, object], name: str) -> None:
        with self.client.post(path, json=body, name=name, catch_response=True) as response:
            if response.status_code == 429:
                response.success()  # overload is an answer, counted by the service's metrics
            elif response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")

    @task(6)
    def classify_one(self) -> None:
        self._post("/classify", {"inputs": random.choice(SHORT)}, "classify x1")

    @task(2)
    def classify_batch(self) -> None:
        self._post("/classify", {"inputs": random.sample(SHORT, 16)}, "classify x16")

    @task(3)
    def embed_one(self) -> None:
        self._post("/embed", {"inputs": random.choice(SHORT)}, "embed x1")

    @task(1)
    def embed_batch(self) -> None:
        self._post("/embed", {"inputs": random.sample(SHORT, 8) + random.sample(LONG, 2)}, "embed x10 (2 long)")

    @task(1)
    def openai_embeddings(self) -> None:
        self._post(
            "/v1/embeddings", {"input": random.sample(SHORT, 4), "model": "all-minilm-l6-v2"}, "v1/embeddings x4"
        )
