"""POST /classify/tokens (and its alias /tokens): named entities and other token tags."""

from __future__ import annotations

from service.state import AppState
from service.tasks.common import Call, Texts
from service.tasks.entities.handler import tag_texts
from service.tasks.entities.schemas import EntitiesRequest, EntitiesResponse
from service.tasks.spec import Reply, Route, Task


async def entities_route(body: EntitiesRequest, state: AppState, call: Call) -> Reply:
    """Entities per input, in text order, with character offsets: input[start:end] == text."""
    texts = Texts.of(body.inputs, "inputs")
    out = await tag_texts(
        state, call, texts, body.model, body.aggregation, body.ignore_labels, body.truncate, body.stride
    )
    return Reply(
        {"model": out.model, "entities": out.entities, "covered": out.covered, "usage": {"input_tokens": out.tokens}}
    )


TASK = Task(
    "entities",
    ("entities",),
    (
        Route("/classify/tokens", EntitiesRequest, EntitiesResponse, entities_route),
        Route("/tokens", EntitiesRequest, EntitiesResponse, entities_route),
    ),
)
