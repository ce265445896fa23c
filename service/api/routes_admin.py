"""Operations on a running replica: POST /admin/reload (also on SIGHUP)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.api.deps import Authorized, State
from service.api.responses import JSONBytes
from service.api.schemas import ReloadResponse, error_responses
from service.reload import reload

router = APIRouter()


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    responses=error_responses(401, 422, 503),
    response_class=JSONBytes,
)
async def reload_models(state: State, _: Authorized) -> Response:
    """Rescan the model repository: load new model directories, replace the models whose graph
    checksum changed (loaded and warmed up beside the old one, then swapped in; requests
    already queued finish on the old one), unload removed ones. All or nothing: a directory
    that does not load or verify is refused with 422 naming it, and nothing changes."""
    changes = await reload(state)
    return JSONBytes(changes.__dict__)
