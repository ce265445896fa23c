"""POST /tokenize, in text-embeddings-inference's format (offsets are character offsets here;
TEI's are byte offsets)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.api.deps import Authorized, CallOf, State
from service.api.responses import JSONBytes
from service.api.schemas import MODEL_ROUTE_RESPONSES, TokenInfo, TokenizeRequest
from service.serving.common import Texts
from service.serving.tokenize import tokenize as tokenize_texts

router = APIRouter()


@router.post(
    "/tokenize", response_model=list[list[TokenInfo]], responses=MODEL_ROUTE_RESPONSES, response_class=JSONBytes
)
async def tokenize(body: TokenizeRequest, state: State, call: CallOf, _: Authorized) -> Response:
    """The tokens each input is fed to the model as: one list per input."""
    texts = Texts.of(body.inputs, "inputs")
    model, rows = await tokenize_texts(state, call, texts, body.model, body.add_special_tokens, body.truncate)
    out = [[t._asdict() for t in row] for row in rows]
    return JSONBytes(out, headers={"X-Model": model})
