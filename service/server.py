"""`bertserve serve`: check what is cheap to check, bind the port, then serve while the models
load in the background. Every start-up failure is one line on stderr and exit code 2."""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError

from service import building, logs
from service.app import Prepare, create_app
from service.lifecycle import one_line, read_repository
from service.processes import IPC_DIR_VARIABLE
from service.settings import Settings
from service.sources.serving import for_sources
from service.sources.spec import Source
from service.supervisor import api_servers, become_supervisor
from service.uvicorn_adapter import DrainingServer, protocol_class

EXIT_STARTUP = 2
log = logging.getLogger("bertserve")


def fail(message: str) -> int:
    print(f"bertserve serve: error: {message}", file=sys.stderr, flush=True)
    return EXIT_STARTUP


def settings_error(exc: ValidationError) -> str:
    """The first error, naming the variable: the field itself, not a key or item inside it, and
    the message without pydantic's "Value error, " in front of the validator's own words."""
    first = exc.errors()[0]
    where = str(first["loc"][0]) if first["loc"] else "settings"
    return f"setting {where} (BERTSERVE_{where.upper()}): {first['msg'].removeprefix('Value error, ')}"


def bind(host: str, port: int) -> socket.socket:
    """Listen before loading, so a busy port is reported at once, not after the models."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def listening_url(host: str, port: int) -> str:
    """The address to reach the server at, as a URL (the port as bound: port 0 picks one)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def raise_open_files(connections: int) -> str | None:
    """Lift the soft open-file limit so `connections` sockets fit (plus room for the model
    files and the runtime), up to the hard limit; a warning when even that is too low."""
    wanted = connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        soft = ceiling
    if soft != resource.RLIM_INFINITY and soft < wanted:
        return f"the open-file limit ({soft}) is below BERTSERVE_MAX_CONNECTIONS ({connections}) + 256"
    return None


def _with_exports(repository: Path) -> int:
    """The models linked into a `serve --model` repository and those still to export."""
    return sum(not p.name.startswith(".") for p in repository.iterdir()) + len(building.read(repository))


def serve(
    models: str | None = None, host: str | None = None, port: int | None = None, sources: list[Source] | None = None
) -> int:
    overrides: dict[str, Any] = {"models": Path(models) if models else None, "host": host, "port": port}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        return fail(settings_error(exc))
    logs.configure(settings.log_level)
    warning = raise_open_files(settings.max_connections)
    if warning:
        log.warning(warning)
    try:
        # --model: checkpoints resolved and looked up in the export cache; any export left
        # runs behind the port (`prepare`), which is why the repository is then read later.
        settings, prepare = for_sources(settings, sources or [])
        # The cheap checks; the files are hashed once, by the load behind the port.
        repository = read_repository(settings, warn=False) if prepare is None else None
    except Exception as exc:  # any class: still one line
        return fail(one_line(exc))
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        return fail(f"cannot listen on {settings.host}:{settings.port}: {reason}")
    url = listening_url(settings.host, sock.getsockname()[1])
    count = len(repository.found) if repository else _with_exports(settings.models)
    log.info(f"listening on {url}, loading {count} model{'s' if count != 1 else ''}", extra={"url": url})

    servers = api_servers(settings)
    if servers > 1 and prepare is not None:
        # The exports run behind the port, in this process: the engine process would not see
        # them. Served from the cache, the next start has its front ends.
        log.warning(
            f"checkpoints to export: serving from one process, not {servers} front ends; restarted, "
            "the service serves them from the export cache with its front ends"
        )
    elif servers > 1:
        become_supervisor(sock, servers, {**overrides, "models": settings.models}, settings)  # does not return
    return run_front(settings, sock, url, prepare=prepare)


def run_front(
    settings: Settings, sock: socket.socket, url: str, engine: Path | None = None, prepare: Prepare | None = None
) -> int:
    """Serve HTTP on `sock`: the models in this process (after `prepare`: exports of
    `serve --model`), or, with `engine` (the engine's run folder), in the engine process (a
    front end of the supervisor's)."""
    exit_code = 0
    server: DrainingServer | None = None

    def on_load_error(reason: str) -> None:
        nonlocal exit_code
        exit_code = fail(reason)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_load_error=on_load_error, engine_dir=engine, prepare=prepare)
    app.state.bertserve.url = url
    config = uvicorn.Config(
        app,
        http=protocol_class(
            settings.header_timeout_s, settings.max_connections, app.state.bertserve.held, app.state.bertserve
        ),
        timeout_keep_alive=int(max(1, settings.keep_alive_timeout_s)),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = DrainingServer(config, app.state.bertserve)
    server.run(sockets=[sock])
    return exit_code


def front_end(fd: int) -> int:
    """A front-end process (service/supervisor.py): HTTP on the supervisor's socket, the
    models in the engine process."""
    settings = Settings()
    logs.configure(settings.log_level)
    raise_open_files(settings.max_connections)
    sock = socket.socket(fileno=fd)
    host, port = sock.getsockname()[:2]
    return run_front(settings, sock, listening_url(host, port), engine=Path(os.environ[IPC_DIR_VARIABLE]))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--front-end":
        sys.exit(fail("usage: python -m service.server --front-end FD (the supervisor starts it)"))
    sys.exit(front_end(int(sys.argv[2])))
