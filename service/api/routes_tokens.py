"""POST /classify/tokens (and its alias /tokens): named entities and other token tags."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.api.deps import Authorized, CallOf, State
from service.api.responses import JSONBytes
from service.api.schemas import MODEL_ROUTE_RESPONSES, TokensRequest, TokensResponse
from service.serving.common import Texts
from service.serving.tokens import tag_texts

router = APIRouter()


@router.post(
    "/classify/tokens", response_model=TokensResponse, responses=MODEL_ROUTE_RESPONSES, response_class=JSONBytes
)
@router.post("/tokens", response_model=TokensResponse, responses=MODEL_ROUTE_RESPONSES, response_class=JSONBytes)
async def tokens(body: TokensRequest, state: State, call: CallOf, _: Authorized) -> Response:
    """Entities per input, in text order, with character offsets: input[start:end] == text."""
    texts = Texts.of(body.inputs, "inputs")
    out = await tag_texts(
        state, call, texts, body.model, body.aggregation, body.ignore_labels, body.truncate, body.stride
    )
    return JSONBytes(
        {"model": out.model, "entities": out.entities, "covered": out.covered, "usage": {"input_tokens": out.tokens}}
    )
