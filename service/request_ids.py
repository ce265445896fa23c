"""Request ids: the client's X-Request-ID when it is safe to echo and log, else a new one.
Shared by the middleware and the protocol adapter (which answers some requests itself)."""

from __future__ import annotations

import re
import uuid

# An incoming X-Request-ID is kept when it is 1-128 of these characters, else replaced.
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_from(given: str) -> str:
    return given if SAFE_REQUEST_ID.match(given) else new_request_id()
