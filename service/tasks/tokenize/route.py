"""POST /tokenize, in text-embeddings-inference's format (offsets are character offsets here;
TEI's are byte offsets)."""

from __future__ import annotations

from service.state import AppState
from service.tasks.common import Call, Texts
from service.tasks.spec import Reply, Route, Task
from service.tasks.tokenize.handler import tokenize
from service.tasks.tokenize.schemas import TokenInfo, TokenizeRequest


async def tokenize_route(body: TokenizeRequest, state: AppState, call: Call) -> Reply:
    """The tokens each input is fed to the model as: one list per input."""
    texts = Texts.of(body.inputs, "inputs")
    model, rows = await tokenize(state, call, texts, body.model, body.add_special_tokens, body.truncate)
    return Reply([[t._asdict() for t in row] for row in rows], {"X-Model": model})


# Any model can tokenize; unnamed, the embedding model's tokenizer is the default. Nothing is
# queued, so no fast 429.
TASK = Task(
    "tokenize",
    ("embed", "classify", "rerank", "entities"),
    (Route("/tokenize", TokenizeRequest, list[list[TokenInfo]], tokenize_route, queued=False),),
)
