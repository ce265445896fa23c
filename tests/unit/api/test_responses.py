import numpy as np
import orjson
import pytest
from starlette.responses import JSONResponse

from service.api.responses import JSONBytes


class _Starlettes(JSONResponse):
    """Starlette's own header logic around the same body."""

    def render(self, content: object) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (200, None),
        (201, None),
        (422, None),
        (204, None),
        (304, None),
        (200, {"X-Model": "m"}),
        (200, {"Content-Type": "text/plain"}),
    ],
)
def test_headers_are_starlettes(status: int, headers: dict[str, str] | None) -> None:
    content = {"rows": np.arange(3, dtype=np.float32), "text": "é"}
    ours, theirs = JSONBytes(content, status, headers), _Starlettes(content, status, headers)
    assert ours.body == theirs.body
    assert ours.raw_headers == theirs.raw_headers
