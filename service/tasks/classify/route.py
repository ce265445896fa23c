"""POST /classify: the body in, the answer out; the work is in handler.py."""

from __future__ import annotations

from service.state import AppState
from service.tasks.classify.handler import classify
from service.tasks.classify.schemas import ClassifyRequest, ClassifyResponse
from service.tasks.common import Call, Texts
from service.tasks.spec import Reply, Route, Task


async def classify_route(body: ClassifyRequest, state: AppState, call: Call) -> Reply:
    """Classify one text, a batch of texts, or a batch of text pairs; one sorted list of label
    scores per input."""
    texts = Texts.of(body.inputs, "inputs")
    out = await classify(
        state, call, texts, body.model, body.top_k, body.function, body.truncate, body.stride, body.window_pooling
    )
    answer: dict[str, object] = {
        "model": out.model,
        "predictions": out.predictions,
        "truncated": out.truncated,
        "covered": out.covered,
    }
    if body.stride is not None:
        answer["windows"] = out.windows
    return Reply({**answer, "usage": {"input_tokens": out.tokens}})


TASK = Task("classify", ("classify",), (Route("/classify", ClassifyRequest, ClassifyResponse, classify_route),))
