"""The images: what the runtime image holds, and one container of it run as the README's
Docker section says."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.docker import dockerctl as d
from tests.docker.conftest import FIGURES, Images


def _python_in(image: str, code: str) -> str:
    return d.run(["docker", "run", "--rm", "--label", d.TEST_LABEL, "--entrypoint", "python", image, "-c", code]).stdout


def test_runtime_image_holds_no_torch(images: Images) -> None:
    code = (
        "import importlib.metadata as m, importlib.util as u\n"
        "names = sorted(x.metadata['Name'].lower() for x in m.distributions())\n"
        "print(u.find_spec('torch') is None, u.find_spec('transformers') is None, 'onnxruntime' in names)\n"
        "print(' '.join(n for n in names if 'torch' in n or 'nvidia' in n or n == 'transformers'))"
    )
    first, second = [*_python_in(d.RUNTIME_IMAGE, code).splitlines(), ""][:2]
    assert first == "True True True", first
    assert second == "", f"in the runtime image: {second}"


def test_runtime_image_user_entrypoint_and_healthcheck(images: Images) -> None:
    config = d.inspect(d.RUNTIME_IMAGE)["Config"]
    assert config["User"] == "10001"
    assert config["Entrypoint"] == ["bertserve", "serve"]  # exec form: the server is PID 1
    test = config["Healthcheck"]["Test"]
    assert test[0] == "CMD" and test[1] == "python", test
    # The check needs no curl: the image has none.
    assert _python_in(d.RUNTIME_IMAGE, "import shutil; print(shutil.which('curl'))").strip() == "None"


def test_extra_dockerfiles_lint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    files = [str(p) for p in sorted((d.REPO / "deploy" / "docker").glob("*.Dockerfile"))]
    proc = subprocess.run([str(hadolint), *files], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_docker_run_serves_and_stops_cleanly(images: Images) -> None:
    """`docker run --rm -p 127.0.0.1:8000:8000 --stop-timeout 35 bertserve`, detached and named so
    the test can read its exit code (so without --rm); another port when 8000 is taken."""
    port = 8000 if d.port_free(8000) else 18000
    name = "bertserve-test-single"
    args = ["docker", "run", "-d", "--name", name, "--label", d.TEST_LABEL]
    args += ["-p", f"127.0.0.1:{port}:8000", "--stop-timeout", "35", "bertserve"]
    try:
        started = time.monotonic()
        d.run(args)
        d.wait_healthy([name])
        FIGURES["docker run -> healthy"] = f"{time.monotonic() - started:.1f} s"
        body = {"inputs": ["A gripping, beautifully shot film.", "Dull and far too long."]}
        answer = httpx.post(f"http://127.0.0.1:{port}/classify", json=body, timeout=30).json()
        assert [p[0]["label"] for p in answer["predictions"]] == ["positive", "negative"]
        # The server is PID 1, as user 10001.
        status = d.run(["docker", "exec", name, "cat", "/proc/1/status"]).stdout
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == ["10001"] * 4, uid_line
        cmdline = d.run(["docker", "exec", name, "cat", "/proc/1/cmdline"]).stdout.replace("\0", " ")
        assert "bertserve serve" in cmdline, cmdline
        stopping = time.monotonic()
        d.run(["docker", "stop", name], timeout=60)
        FIGURES["docker run: docker stop (idle)"] = f"{time.monotonic() - stopping:.1f} s"
        assert d.inspect(name)["State"]["ExitCode"] == 0
    finally:
        d.run(["docker", "rm", "-f", name], check=False)
