"""POST /classify: parse the body, shape the response; the work is in serving/classify.py."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.api.deps import Authorized, CallOf, State
from service.api.responses import JSONBytes
from service.api.schemas import MODEL_ROUTE_RESPONSES, ClassifyRequest, ClassifyResponse
from service.serving.classify import classify as classify_texts
from service.serving.common import Texts

router = APIRouter()


@router.post("/classify", response_model=ClassifyResponse, responses=MODEL_ROUTE_RESPONSES, response_class=JSONBytes)
async def classify(body: ClassifyRequest, state: State, call: CallOf, _: Authorized) -> Response:
    """Classify one text, a batch of texts, or a batch of text pairs; one sorted list of label
    scores per input."""
    texts = Texts.of(body.inputs, "inputs")
    out = await classify_texts(state, call, texts, body.model, body.top_k, body.function, body.truncate)
    return JSONBytes({"model": out.model, "predictions": out.predictions, "usage": {"input_tokens": out.tokens}})
