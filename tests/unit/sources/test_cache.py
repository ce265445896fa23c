"""The export cache's key (the checkpoint's content, the options, the format), its entries
(only a complete, renamed folder counts), its lock and its pruning."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from service.sources import cache as cache_module
from service.sources.cache import Cache, cache_key, default_dir

OPTIONS = {"task": "classify", "name": "m", "int8": True, "fp16": False}


def checkpoint(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "bert"}')
    (root / "model.safetensors").write_bytes(b"\x00" * 1000)
    (root / "tokenizer.json").write_text("{}")
    return root


def test_a_changed_weight_file_changes_the_key(tmp_path: Path) -> None:
    path = checkpoint(tmp_path / "ckpt")
    before = cache_key(path, OPTIONS)
    (path / "model.safetensors").write_bytes(b"\x00" * 999 + b"\x01")
    assert cache_key(path, OPTIONS) != before


def test_a_touched_mtime_or_another_path_keeps_the_key(tmp_path: Path) -> None:
    path = checkpoint(tmp_path / "ckpt")
    before = cache_key(path, OPTIONS)
    os.utime(path / "model.safetensors", (time.time() + 3600, time.time() + 3600))
    assert cache_key(path, OPTIONS) == before
    copy = shutil.copytree(path, tmp_path / "elsewhere" / "other-name")
    assert cache_key(copy, OPTIONS) == before


def test_options_and_the_format_are_in_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = checkpoint(tmp_path / "ckpt")
    before = cache_key(path, OPTIONS)
    assert cache_key(path, {**OPTIONS, "int8": False}) != before
    assert cache_key(path, {**OPTIONS, "name": "other"}) != before
    monkeypatch.setattr(cache_module, "EXPORT_FORMAT", cache_module.EXPORT_FORMAT + 1)
    assert cache_key(path, OPTIONS) != before


def test_files_outside_what_the_export_reads_are_not_in_the_key(tmp_path: Path) -> None:
    """Hidden files and a trainer's checkpoint-N folders are not read by the export; the
    folders modules.json names are."""
    path = checkpoint(tmp_path / "ckpt")
    before = cache_key(path, OPTIONS)
    (path / ".DS_Store").write_bytes(b"x")
    (path / "checkpoint-500").mkdir()
    (path / "checkpoint-500" / "optimizer.pt").write_bytes(b"x")
    assert cache_key(path, OPTIONS) == before
    (path / "modules.json").write_text(json.dumps([{"path": "1_Pooling", "type": "Pooling"}]))
    with_modules = cache_key(path, OPTIONS)
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert cache_key(path, OPTIONS) != with_modules


def test_the_default_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_dir() == tmp_path / "bertserve"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_dir() == Path.home() / ".cache" / "bertserve"


def _export_into(partial: Path) -> None:
    (partial / "model").mkdir()
    (partial / "model" / "manifest.json").write_text("{}")


def test_only_a_committed_entry_is_trusted(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    partial = cache.partial("abc")
    _export_into(partial)
    assert cache.entry("abc") is None
    assert cache.entries() == []
    entry = cache.commit("abc", partial, {"name": "m", "task": "classify"})
    assert entry.model == tmp_path / "exports" / "abc" / "model"
    assert cache.entry("abc") == entry and cache.partials() == []
    assert entry.source()["name"] == "m"


def test_a_new_export_clears_what_a_dead_one_left(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    dead = cache.exports / ".partial-abc-99999"
    dead.mkdir(parents=True)
    _export_into(dead)
    assert cache.entry("abc") is None
    fresh = cache.partial("abc")
    assert cache.partials("abc") == [fresh]


def test_the_lock_is_held_by_one_at_a_time(tmp_path: Path) -> None:
    """flock locks an open file: a second open of the lock file, as another process makes,
    does not get it while the first holds it."""
    cache = Cache(tmp_path)
    with cache.try_lock("abc") as first:
        assert first
        with cache.try_lock("abc") as second, cache.try_lock("other") as third:
            assert (second, third) == (False, True)
    with cache.try_lock("abc") as again:
        assert again


def test_prune_removes_unused_entries_and_dead_exports(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    for key in ("old", "new", "busy"):
        partial = cache.partial(key)
        _export_into(partial)
        cache.commit(key, partial, {"name": key})
    month_ago = time.time() - 31 * 86400
    for key in ("old", "busy"):
        os.utime(cache.exports / key, (month_ago, month_ago))
    (cache.exports / ".partial-dead-123").mkdir()
    with cache.try_lock("busy"):
        removed = cache.prune(30)
    assert removed == ["old old", ".partial-dead-123 (an unfinished export)"]
    assert sorted(e.key for e in cache.entries()) == ["busy", "new"]
    assert cache.prune(None) == ["new new", "busy busy"]
    assert cache.entries() == []


def test_the_cache_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import main

    monkeypatch.setenv("BERTSERVE_CACHE_DIR", str(tmp_path))
    cache = Cache(tmp_path)
    partial = cache.partial("f" * 64)
    _export_into(partial)
    cache.commit("f" * 64, partial, {"name": "sentiment", "task": "classify", "source": "/ckpt"})
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{tmp_path}: 1 entry"
    assert out[2].split() == ["ffffffffffff", "sentiment", "classify", "fp32", "0.0MB", "just", "now", "/ckpt"]
    assert main(["cache", "prune"]) == 2
    assert capsys.readouterr().err == "bertserve cache prune: error: give --older-than DAYS or --all\n"
    assert main(["cache", "prune", "--older-than", "1"]) == 0
    assert capsys.readouterr().out == f"{tmp_path}: 0 removed, 1 kept\n"
    assert main(["cache", "prune", "--all"]) == 0
    assert capsys.readouterr().out == f"removed ffffffffffff sentiment\n{tmp_path}: 1 removed, 0 kept\n"
