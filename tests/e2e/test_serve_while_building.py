"""`make run` (models/build.py --serve) serves each default model as soon as it is built: a
real service process starts on the first model built, says what is still building, and takes
the next model through a live reload (SIGHUP) when its build ends.

The builds here copy tiny exported models into place, where the real ones export and
fine-tune for minutes; everything after a build is the real path.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.e2e.procs import REPO, free_port
from tests.sync import until

pytestmark = pytest.mark.e2e


def _build_script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("models_build", REPO / "models" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _get(url: str) -> Any:
    try:
        r = httpx.get(url, timeout=5)
    except httpx.TransportError:  # not listening yet
        return None
    return r.json() if r.status_code == 200 else None


def test_serves_the_first_model_built_and_adds_the_next_by_reload(
    tiny_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = _build_script(monkeypatch)
    repo = tmp_path / "models"
    repo.mkdir()
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("BERTSERVE_MODELS", str(repo))
    monkeypatch.setenv("BERTSERVE_PORT", url.rsplit(":", 1)[1])
    seen: dict[str, Any] = {}

    def copy(name: str) -> None:
        shutil.copytree(tiny_repo / name, repo / name)

    def build_classifier(force: bool, fp16: bool) -> None:
        # The service answers on the embedding model while this build runs, and says so.
        seen["ready"] = until(lambda: _get(f"{url}/health/ready"), timeout=120, what="the first model served")
        seen["models"] = _get(f"{url}/models")
        copy("tiny-clf")

    def stop_once_both_serve() -> None:
        try:
            until(
                lambda: len((_get(f"{url}/models") or {}).get("models", [])) == 2,
                timeout=180,
                what="the classifier added by reload",
            )
            seen["after"] = _get(f"{url}/health/ready")
            seen["classify"] = httpx.post(f"{url}/classify", json={"inputs": "fine"}, timeout=30).status_code
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # as make's SIGTERM would: the build forwards it

    defaults = {
        "tiny-emb": build.Default("embed", lambda force, fp16: copy("tiny-emb")),
        "tiny-clf": build.Default("classify", build_classifier),
    }
    watcher = threading.Thread(target=stop_once_both_serve, daemon=True)
    watcher.start()
    with pytest.raises(SystemExit) as exited:
        build.serve_while_building(False, defaults, repo, [sys.executable, "-m", "service", "serve"])
    watcher.join(10)

    assert exited.value.code == 128 + signal.SIGTERM
    assert seen["ready"] == {"status": "ready", "building": {"tiny-clf": {"task": "classify", "state": "building"}}}
    assert [m["name"] for m in seen["models"]["models"]] == ["tiny-emb"]
    assert seen["models"]["building"] == {"tiny-clf": {"task": "classify", "state": "building"}}
    assert seen["after"] == {"status": "ready"}
    assert seen["classify"] == 200
    assert not (repo / ".building.json").exists()
