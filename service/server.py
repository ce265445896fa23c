"""`bertserve serve`: load (failing fast), then run uvicorn with a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from service import logs
from service.api.state import AppState
from service.app import create_app
from service.protocol import protocol_class
from service.runtime.loader import ModelLoadError, load_all
from service.settings import Settings

log = logging.getLogger("bertserve")


class DrainingServer(uvicorn.Server):
    """On SIGTERM: readiness turns 503 and new requests get 503 (a load balancer retries them
    elsewhere), requests already accepted finish, then the server exits, within the drain
    timeout. A second signal, or SIGINT, stops at once the way uvicorn does."""

    def __init__(self, config: uvicorn.Config, state: AppState) -> None:
        super().__init__(config)
        self.state = state
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._draining:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self.state.start_draining()
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._drain()))

    async def _drain(self) -> None:
        timeout = self.state.settings.drain_timeout_s
        log.info("draining", extra={"inflight": self.state.inflight, "timeout_s": timeout})
        deadline = time.monotonic() + timeout
        while self.state.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        log.info("drained", extra={"inflight": self.state.inflight})
        self.should_exit = True


def serve(models: str | None = None, host: str | None = None, port: int | None = None) -> int:
    overrides: dict[str, Any] = {"models": Path(models) if models else None, "host": host, "port": port}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"bertserve serve: error: setting {first['loc'][0]}: {first['msg']}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    try:
        settings.all_api_keys()
        loaded = load_all(settings)
    except ModelLoadError as exc:
        print(f"bertserve serve: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bertserve serve: error: api_keys_file: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
    app = create_app(settings, loaded)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_class(settings.header_timeout_s, settings.max_connections),
        timeout_keep_alive=int(max(1, settings.keep_alive_timeout_s)),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    DrainingServer(config, app.state.bertserve).run()
    return 0
