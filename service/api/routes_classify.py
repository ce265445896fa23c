from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.api.deps import Authorized, State, text_inputs, until_disconnect
from service.api.responses import JSONBytes
from service.api.schemas import ERRORS, ClassifyRequest, ClassifyResponse
from service.tasks.classify import default_function, predictions, scores

router = APIRouter()


@router.post("/classify", response_model=ClassifyResponse, responses=ERRORS, response_class=JSONBytes)
async def classify(body: ClassifyRequest, request: Request, state: State, _: Authorized) -> Response:
    """Classify one text or a batch of texts; one sorted list of label scores per input."""
    pipeline = state.resolve("classify", body.model)
    request.state.model = pipeline.name
    texts = text_inputs(body.inputs, state.settings.max_inputs, state.settings.max_input_chars)
    state.admit()
    logits, tokens = await until_disconnect(request, pipeline.infer(texts, body.truncate, state.deadline(request)))
    function = body.function or default_function(pipeline.manifest.multi_label)
    labels = pipeline.manifest.labels or []
    return JSONBytes(
        {
            "model": pipeline.name,
            "predictions": predictions(scores(logits, function), labels, body.top_k),
            "usage": {"input_tokens": tokens},
        }
    )
