"""The `export` image: a fine-tuned checkpoint folder mounted into it and served with
`--model`, as the README's line types it; the first start exports and verifies into the cache
volume, a new container on the same volume is served from the cache."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx

from tests.docker import dockerctl as d
from tests.docker.conftest import FIGURES, Images

EXPORT_IMAGE = "bertserve:export"
CACHE_VOLUME = "bertserve-test-cache"
NAME = "bertserve-test-export"
# What `make models` fine-tunes and keeps: the default classifier's checkpoint.
CHECKPOINT = d.REPO / ".build" / "minilm-sentiment-checkpoint"
TEXTS = ["A gripping, beautifully shot film.", "Dull and far too long."]


def _serve(checkpoint: Path, port: int, command: tuple[str, ...] = ()) -> tuple[float, dict[str, object]]:
    """One container of the README's line (`command`: what comes before --model, the command
    named again); seconds to healthy and its /classify answer."""
    args = ["docker", "run", "-d", "--name", NAME, "--label", d.TEST_LABEL, "-p", f"127.0.0.1:{port}:8000"]
    args += [
        "-v",
        f"{checkpoint}:/checkpoint:ro",
        "-v",
        f"{CACHE_VOLUME}:/cache",
        EXPORT_IMAGE,
        *command,
        "--model",
        "/checkpoint",
    ]
    started = time.monotonic()
    d.run(args)
    # A cold start exports, verifies against PyTorch and quantizes: minutes on 2 slow cores.
    d.wait_healthy([NAME], timeout=1500)
    ready_s = time.monotonic() - started
    answer = httpx.post(f"http://127.0.0.1:{port}/classify", json={"inputs": TEXTS}, timeout=30)
    assert answer.status_code == 200, answer.text
    return ready_s, answer.json()


def _messages(name: str) -> list[str]:
    return [str(record.get("msg", "")) for record in d.logs(name)]


def test_a_mounted_checkpoint_is_served_then_served_from_the_cache_volume(images: Images, tmp_path: Path) -> None:
    assert (CHECKPOINT / "config.json").is_file(), "no fine-tuned checkpoint in .build/: run make models first"
    # The image runs as uid 10001: what it mounts must be readable by others (a checkpoint
    # fine-tuned before its files were made so has its weights owner-only).
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(CHECKPOINT, checkpoint)
    for path in [checkpoint, *checkpoint.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    # As the README types it, with the base image built from Debian's packages.
    args = ["docker", "build", "--label", d.TEST_LABEL, "--target", "export", "--build-arg", "MODELS_FROM=none"]
    args += ["--build-arg", f"PYTHON_IMAGE={d.BASE_IMAGE}", "-t", EXPORT_IMAGE, "."]
    FIGURES["export image"] = f"{d.run_logged(args, images.log, timeout=1500):.0f} s"
    FIGURES["image sizes"] = (
        f"runtime {d.image_size(d.RUNTIME_IMAGE) / 1e6:.0f} MB, export {d.image_size(EXPORT_IMAGE) / 1e6:.0f} MB"
    )
    port = 8000 if d.port_free(8000) else 18001
    d.run(["docker", "rm", "-f", NAME], check=False)
    d.run(["docker", "volume", "rm", "-f", CACHE_VOLUME], check=False)
    d.run(["docker", "volume", "create", "--label", d.TEST_LABEL, CACHE_VOLUME])
    try:
        cold_s, cold = _serve(checkpoint, port)
        first = _messages(NAME)
        assert any("into the cache" in m for m in first), first[-20:]
        labels = [p[0]["label"] for p in cold["predictions"]]  # type: ignore[index]
        assert labels == ["positive", "negative"], cold
        d.run(["docker", "rm", "-f", NAME])

        # The form with the command named (`<image> serve --model ...`) serves the same.
        warm_s, warm = _serve(checkpoint, port, ("serve",))
        second = _messages(NAME)
        assert any("from the export cache" in m for m in second), second[-20:]
        assert not any("into the cache" in m for m in second), second[-20:]
        # The same graph from the cache: the same answer, to the last bit.
        assert warm == cold
        FIGURES["serve --model /checkpoint -> healthy"] = (
            f"cold (export, verify) {cold_s:.0f} s, from the cache {warm_s:.1f} s"
        )
    finally:
        d.run(["docker", "rm", "-f", NAME], check=False)
        d.run(["docker", "volume", "rm", "-f", CACHE_VOLUME], check=False)
