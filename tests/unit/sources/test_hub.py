"""Hub ids through huggingface_hub's own snapshot_download, against a hub cache the test writes
in the library's layout (HF_HUB_OFFLINE=1), and against a local server standing in for the hub
(HF_ENDPOINT) for the answers of a gated or private model. Each runs in a child process:
huggingface_hub reads its environment once, when it is imported."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub import COMMIT, write_hub_cache
from tests.unit.sources.test_detect import folder

REPO = Path(__file__).resolve().parents[3]


def _env(hf_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    return {**env, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "BERTSERVE_LOG_LEVEL": "warning", **extra}


def _resolve(texts: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = f"from service.sources.hub import download\nfor text in {texts!r}: print(download(text))"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)


def _serve(source: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "service", "serve", "--port", "0", "--model", source]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def hub_home(tmp_path: Path) -> Path:
    files = folder(tmp_path / "files", "tiny", "BertForSequenceClassification")
    write_hub_cache(tmp_path / "hf", "acme/tiny-classifier", files)
    return tmp_path / "hf"


def test_a_cached_hub_id_resolves_offline(hub_home: Path) -> None:
    """By the branch (refs/main), by the commit, and by the default branch."""
    snapshot = hub_home / "hub" / "models--acme--tiny-classifier" / "snapshots" / COMMIT
    texts = ["acme/tiny-classifier", f"acme/tiny-classifier@{COMMIT}", "acme/tiny-classifier@main"]
    done = _resolve(texts, _env(hub_home))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(snapshot)] * 3
    assert (snapshot / "config.json").resolve().parent.name == "blobs"


def test_a_hub_id_not_cached_is_one_line(hub_home: Path) -> None:
    done = _serve("acme/other-model", _env(hub_home))
    assert done.returncode == 2
    assert done.stderr == (
        "bertserve serve: error: acme/other-model is not in the Hugging Face cache and cannot be downloaded "
        "(offline, or no network): pre-download it with `hf download acme/other-model`, or mount a cache that "
        "has it at HF_HOME\n"
    )


def test_a_revision_not_cached_is_one_line(hub_home: Path) -> None:
    done = _serve("acme/tiny-classifier@v2", _env(hub_home))
    assert done.returncode == 2
    assert "pre-download it with `hf download acme/tiny-classifier --revision v2`" in done.stderr
    assert done.stderr.count("\n") == 1


class _Hub(http.server.BaseHTTPRequestHandler):
    """Answers every request as the hub answers one for a gated or private model without a token."""

    code = "GatedRepo"

    def do_GET(self) -> None:  # the name http.server calls
        self.send_response(401)
        self.send_header("X-Error-Code", self.code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def hub_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "GatedRepo",
            "acme/gated is a gated model: accept its conditions on the hub, then set HF_TOKEN to a token of that "
            "account",
        ),
        ("RepoNotFound", "acme/gated is not on the hub, or is private: set HF_TOKEN to a token that can read it"),
    ],
)
def test_a_gated_or_private_model_without_a_token_names_hf_token(
    tmp_path: Path,
    hub_server: http.server.ThreadingHTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    code: str,
    expected: str,
) -> None:
    monkeypatch.setattr(_Hub, "code", code)
    endpoint = f"http://127.0.0.1:{hub_server.server_address[1]}"
    done = _serve("acme/gated", _env(tmp_path / "hf", HF_HUB_OFFLINE="0", HF_ENDPOINT=endpoint))
    assert done.returncode == 2
    assert done.stderr == f"bertserve serve: error: {expected}\n"
