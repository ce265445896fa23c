"""A model repository that is missing or broken stops start-up with one line and exit 2; one that
serves tells where."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.procs import run_serve

pytestmark = pytest.mark.e2e


def _copy(tiny_repo: Path, tmp_path: Path) -> Path:
    repo = tmp_path / "models"
    shutil.copytree(tiny_repo / "tiny-emb", repo / "tiny-emb")
    return repo / "tiny-emb"


def _assert_one_line_failure(models: Path, expected: str, env: dict[str, str] | None = None) -> None:
    """Exit 2 and one plain line saying why; anything else on stderr is a JSON log record
    (a failure found after the port is bound comes with the server's own log lines)."""
    proc = run_serve(models, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    plain = [line for line in lines if not line.startswith("{")]
    assert len(plain) == 1, proc.stderr
    assert plain[0].startswith("bertserve serve: error:") and expected in plain[0], plain[0]
    for line in lines:
        if line is not plain[0]:
            assert isinstance(json.loads(line), dict)


def test_missing_repository(tmp_path: Path) -> None:
    _assert_one_line_failure(tmp_path / "nowhere", "does not exist")


def test_checksum_mismatch(tiny_repo: Path, tmp_path: Path) -> None:
    model = _copy(tiny_repo, tmp_path)
    with (model / "model.onnx").open("r+b") as fh:
        fh.seek(-64, 2)
        fh.write(b"\0" * 64)
    _assert_one_line_failure(model.parent, "does not match its manifest checksum")


def test_truncated_graph(tiny_repo: Path, tmp_path: Path) -> None:
    model = _copy(tiny_repo, tmp_path)
    data = (model / "model.onnx").read_bytes()
    (model / "model.onnx").write_bytes(data[: len(data) // 2])
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["files"].pop("model.onnx")  # without a checksum, onnxruntime itself must refuse it
    (model / "manifest.json").write_text(json.dumps(manifest))
    _assert_one_line_failure(model.parent, "does not load")


def test_manifest_that_does_not_fit_the_graph(tiny_repo: Path, tmp_path: Path) -> None:
    model = _copy(tiny_repo, tmp_path)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["dimension"] = 384
    (model / "manifest.json").write_text(json.dumps(manifest))
    _assert_one_line_failure(model.parent, "does not match the manifest")


def test_invalid_manifest(tiny_repo: Path, tmp_path: Path) -> None:
    model = _copy(tiny_repo, tmp_path)
    (model / "manifest.json").write_text('{"name": "x"}')
    _assert_one_line_failure(model.parent, "invalid manifest")


def test_graph_that_does_not_fit_its_tokenizer(broken_repo: Path) -> None:
    _assert_one_line_failure(broken_repo, "does not accept token id 30521")


def test_unreadable_manifest_is_reported_as_such(tiny_repo: Path, tmp_path: Path) -> None:
    model = _copy(tiny_repo, tmp_path)
    (model / "manifest.json").unlink()
    (model / "manifest.json").mkdir()  # unreadable as a file, even for root
    _assert_one_line_failure(model.parent, "manifest.json: cannot be read")


def test_bad_log_level(tiny_repo: Path) -> None:
    _assert_one_line_failure(tiny_repo, "BERTSERVE_LOG_LEVEL", env={"BERTSERVE_LOG_LEVEL": "loud"})


def test_fp16_on_the_cpu_provider_is_refused(tiny_repo: Path) -> None:
    _assert_one_line_failure(
        tiny_repo, "fp16 needs the CUDA provider", env={"BERTSERVE_PROVIDER": "cpu", "BERTSERVE_VARIANT": "fp16"}
    )


def test_busy_port_is_reported_before_loading(tiny_repo: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_serve(tiny_repo, port=port)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"bertserve serve: error: cannot listen on 127.0.0.1:{port}: the port is in use"


def test_port_answers_while_the_models_load() -> None:
    """Bound first: probes get live 200 and ready 503 ("starting"), not connection refused."""
    from tests.e2e.procs import DEFAULT_MODELS, Server

    server = Server(DEFAULT_MODELS).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "the port never answered"
            try:
                live = httpx.get(f"{server.url}/health/live", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.02)
        first_ready = httpx.get(f"{server.url}/health/ready", timeout=2)
        assert live.status_code == 200
        assert first_ready.status_code == 503, "models were already loaded: nothing was shown"
        assert "loading" in first_ready.json()["error"]["message"]
        server.wait_ready()
    finally:
        server.terminate()


def test_default_models_that_name_no_served_model_stop_start_up(tiny_repo: Path) -> None:
    _assert_one_line_failure(
        tiny_repo,
        "BERTSERVE_DEFAULT_MODELS names classify=tiny-emb, but 'tiny-emb' is an embed model "
        "(classify models: tiny-clf)",
        env={"BERTSERVE_DEFAULT_MODELS": "classify=tiny-emb"},
    )
    _assert_one_line_failure(
        tiny_repo,
        "setting default_models (BERTSERVE_DEFAULT_MODELS): 'classifier=tiny-clf': unknown task 'classifier'",
        env={"BERTSERVE_DEFAULT_MODELS": "classifier=tiny-clf"},
    )


def test_two_manifests_claiming_the_default_stop_start_up(tiny_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    shutil.copytree(tiny_repo, repo)
    shutil.copytree(repo / "tiny-emb", repo / "tiny-emb-b")
    for name in ("tiny-emb", "tiny-emb-b"):
        manifest = json.loads((repo / name / "manifest.json").read_text())
        (repo / name / "manifest.json").write_text(json.dumps({**manifest, "name": name, "default": True}))
    _assert_one_line_failure(repo, "tiny-emb, tiny-emb-b each say they are the default embed model")


def test_the_log_says_where_it_listens_and_what_it_skipped(tiny_repo: Path, tmp_path: Path) -> None:
    """A folder without a manifest does not stop the start-up; the log names it, and says
    where the port is, once bound and again once ready."""
    from tests.e2e.procs import Server

    repo = tmp_path / "models"
    shutil.copytree(tiny_repo, repo)
    (repo / "old-backup").mkdir()
    log = tmp_path / "server.log"
    with Server(repo, env={"BERTSERVE_LOG_LEVEL": "info"}, log=log) as server:
        models = httpx.get(f"{server.url}/models", timeout=10).json()["models"]
    assert sorted(m["name"] for m in models) == ["tiny-clf", "tiny-emb"]
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    said = [(r["level"], r["msg"]) for r in records if r["logger"] == "bertserve"]
    wanted = [
        ("info", f"listening on {server.url}, loading 2 models"),
        ("warning", "skipped old-backup: no manifest.json, not a model directory"),
        ("info", f"ready: serving 2 models on {server.url}"),
    ]
    assert [s for s in said if s in wanted] == wanted, said  # in this order, among the others
