from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import JSONResponse

_JSON = (b"content-type", b"application/json")


class JSONBytes(JSONResponse):
    """orjson straight to bytes: numpy arrays and floats without a pydantic round trip.
    (A JSONResponse subclass, so FastAPI documents the route's response_model.)"""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        # The same two headers Starlette writes, without its general path: every answer of a
        # model route comes here, right after the model has run, when the CPU caches hold
        # nothing of Python's, and there Starlette's response headers cost most of what its
        # response did (docs/design.md, "Measured figures").
        if headers is None and self.status_code >= 200 and self.status_code not in (204, 304):
            self.raw_headers = [(b"content-length", b"%d" % len(self.body)), _JSON]
        else:
            super().init_headers(headers)
