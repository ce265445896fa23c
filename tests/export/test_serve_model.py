"""`bertserve serve --model <checkpoint>` as a real process over a real socket: the answers are
the bytes of the same model exported by `bertserve export` and served with --models; a restart
is served from the cache; two starts at once export once; a killed export leaves nothing a
later start trusts; a hub id is served from a local hub cache, offline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.sources.cache import Cache
from tests.e2e.procs import REPO, free_port, launch, stop, wait_ready
from tests.hub import write_hub_cache
from tests.sync import until
from tests.tiny import make_checkpoint

TEXTS = ["a tiny model, served from its checkpoint", "the same bytes as its export"]
# The variant is fixed: left to `auto`, the CPU's instructions would pick it.
# The CPU provider: its default variants (int8, no fp16) are those of the `bertserve export --int8`
# the answers are compared with.
ENV = {"BERTSERVE_VARIANT": "fp32", "BERTSERVE_PROVIDER": "cpu", "BERTSERVE_LOG_LEVEL": "info"}
EXPORTING = "into the cache"


class Serving:
    """One `bertserve serve` process with its log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "service", "serve", "--port", str(self.port), *args]
        self.proc = launch(cmd, {**ENV, **env}, log)

    def ready(self) -> Serving:
        wait_ready(self.proc, f"{self.url}/health/ready", timeout=300)
        return self

    def text(self) -> str:
        return self.log.read_text()

    def stage(self) -> str:
        """The message of /health/ready while it is 503 ('' when it cannot be read)."""
        try:
            return str(httpx.get(f"{self.url}/health/ready", timeout=2).json().get("error", {}).get("message", ""))
        except (httpx.TransportError, ValueError):
            return ""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-cls", "bert", head=True)


@pytest.fixture
def servers() -> Iterator[list[Serving]]:
    started: list[Serving] = []
    yield started
    for server in started:
        stop(server.proc)


def _serve(servers: list[Serving], args: list[str], log: Path, cache: Path, **env: str) -> Serving:
    server = Serving(args, log, {"BERTSERVE_CACHE_DIR": str(cache), **env})
    servers.append(server)
    return server


def _classify(server: Serving) -> bytes:
    r = httpx.post(f"{server.url}/classify", json={"inputs": TEXTS}, timeout=30)
    assert r.status_code == 200, r.text
    return r.content


def test_served_from_a_checkpoint_answers_as_its_export(
    checkpoint: Path, tmp_path: Path, servers: list[Serving]
) -> None:
    cache = tmp_path / "cache"
    first = _serve(servers, ["--model", str(checkpoint)], tmp_path / "first.log", cache).ready()
    answer = _classify(first)
    stop(first.proc)
    assert first.text().count(EXPORTING) == 1
    for stage in ("load", "export", "verify fp32", "quantize int8", "verify int8"):
        assert f"export tiny-cls: {stage} done in" in first.text()

    exported = tmp_path / "repo" / "tiny-cls"
    command = [
        sys.executable,
        "-m",
        "service",
        "export",
        str(checkpoint),
        str(exported),
        "--task",
        "classify",
        "--int8",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    plain = _serve(servers, ["--models", str(exported.parent)], tmp_path / "plain.log", cache).ready()
    assert _classify(plain) == answer
    stop(plain.proc)

    again = _serve(servers, ["--model", str(checkpoint)], tmp_path / "again.log", cache).ready()
    assert _classify(again) == answer
    assert EXPORTING not in again.text()
    assert "tiny-cls: from the export cache" in again.text()
    entry = Cache(cache).entries()[0]
    assert (entry.model / "model.onnx").read_bytes() == (exported / "model.onnx").read_bytes()


def test_two_starts_at_once_export_once(checkpoint: Path, tmp_path: Path, servers: list[Serving]) -> None:
    cache = tmp_path / "cache"
    both = [_serve(servers, ["--model", str(checkpoint)], tmp_path / f"{i}.log", cache) for i in range(2)]
    answers = {_classify(server.ready()) for server in both}
    assert len(answers) == 1
    logs = [server.text() for server in both]
    assert sum(log.count(EXPORTING) for log in logs) == 1, logs
    assert len(Cache(cache).entries()) == 1 and Cache(cache).partials() == []


def _export_child(pid: int) -> int | None:
    """The pid of the export the server `pid` runs, if it runs one."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"export" in (stat.parent / "cmdline").read_bytes():
                return int(stat.parent.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_export_leaves_nothing_trusted(checkpoint: Path, tmp_path: Path, servers: list[Serving]) -> None:
    cache = tmp_path / "cache"
    server = _serve(servers, ["--model", str(checkpoint)], tmp_path / "killed.log", cache)
    until(lambda: "(export)" in server.stage(), timeout=120, what="the export stage")
    building = httpx.get(f"{server.url}/models", timeout=5).json()["building"]["tiny-cls"]
    assert building["task"] == "classify" and building["state"] == "building" and building["stage"]
    child = until(lambda: _export_child(server.proc.pid), what="the export process")
    os.kill(child, signal.SIGKILL)
    assert server.proc.wait(60) == 2
    said = f"bertserve serve: error: {checkpoint}: the export was killed (signal 9); nothing was cached"
    assert said in server.text().splitlines()
    assert Cache(cache).entries() == [] and Cache(cache).partials() == []

    after = _serve(servers, ["--model", str(checkpoint)], tmp_path / "after.log", cache).ready()
    _classify(after)
    assert len(Cache(cache).entries()) == 1


def test_a_killed_server_leaves_nothing_trusted(checkpoint: Path, tmp_path: Path, servers: list[Serving]) -> None:
    """SIGKILL (an OOM kill, a node lost): the export dies with the server, its partial folder
    stays untrusted, and the next start exports again."""
    cache = tmp_path / "cache"
    server = _serve(servers, ["--model", str(checkpoint)], tmp_path / "killed.log", cache)
    until(lambda: "(export)" in server.stage(), timeout=120, what="the export stage")
    child = until(lambda: _export_child(server.proc.pid), what="the export process")
    server.proc.kill()
    server.proc.wait(30)
    until(lambda: not _alive(child), what="the export to die with the server")
    assert Cache(cache).entries() == [] and len(Cache(cache).partials()) == 1

    after = _serve(servers, ["--model", str(checkpoint)], tmp_path / "after.log", cache).ready()
    _classify(after)
    assert len(Cache(cache).entries()) == 1 and Cache(cache).partials() == []


def test_a_hub_id_is_served_from_the_hub_cache_offline(
    checkpoint: Path, tmp_path: Path, servers: list[Serving]
) -> None:
    hf_home = tmp_path / "hf"
    write_hub_cache(hf_home, "acme/tiny-sentiment", checkpoint)
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    server = _serve(servers, ["--model", "acme/tiny-sentiment@main"], tmp_path / "hub.log", tmp_path / "cache", **env)
    server.ready()
    r = httpx.post(f"{server.url}/classify", json={"inputs": TEXTS}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "tiny-sentiment"
