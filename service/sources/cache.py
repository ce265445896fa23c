"""The export cache: one verified model directory per (checkpoint content, export options,
export format), shared by every process that points at the same folder (replicas on one volume).

Layout under the cache folder (BERTSERVE_CACHE_DIR, by default $XDG_CACHE_HOME/bertserve or
~/.cache/bertserve, beside Hugging Face's):
  exports/<key>/model/        the model directory, as `bertserve export` writes it
  exports/<key>/source.json   what it was made from, and when
  exports/.partial-<key>-*    an export in progress, or one that died: never served
  locks/<key>.lock            held (flock) by the one process exporting <key>
An entry exists only once it is complete: it is exported into a partial folder and renamed into
place, so a killed export leaves nothing a later start trusts. The entry's mtime is its last use.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Raised whenever what `bertserve export` writes, or how it is asked, changes in a way that
# makes an older entry wrong: every entry made before it is then exported again.
# 2: embedding graphs give their per-token output too (token_embeddings, for late chunking).
EXPORT_FORMAT = 2
CHUNK = 1 << 20


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bertserve"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_files(checkpoint: Path) -> list[Path]:
    """The files the export reads: the folder's own (config, weights, tokenizer,
    sentence-transformers configs) and those of the module folders its modules.json names
    (1_Pooling/...). Hidden files and training leftovers in other folders do not count."""
    files = [p for p in checkpoint.iterdir() if p.is_file() and not p.name.startswith(".")]
    modules = checkpoint / "modules.json"
    if modules.is_file():
        with contextlib.suppress(ValueError, OSError, AttributeError, TypeError):
            for module in json.loads(modules.read_text()):
                folder = checkpoint / str(module.get("path") or "")
                if folder != checkpoint and folder.is_dir():
                    files += [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return sorted(files)


def cache_key(checkpoint: Path, options: dict[str, Any]) -> str:
    """sha256 over the files' contents (by their place in the folder, not its path or their
    mtimes), the export options and EXPORT_FORMAT."""
    files = [[str(p.relative_to(checkpoint)), file_digest(p)] for p in checkpoint_files(checkpoint)]
    text = json.dumps({"format": EXPORT_FORMAT, "files": files, "options": options}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    key: str
    folder: Path

    @property
    def model(self) -> Path:
        return self.folder / "model"

    def source(self) -> dict[str, Any]:
        try:
            data = json.loads((self.folder / "source.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def last_used(self) -> float:
        return self.folder.stat().st_mtime

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.exports = root / "exports"
        self.locks = root / "locks"

    def entry(self, key: str) -> Entry | None:
        """The complete entry for `key`, marked used; None when there is none."""
        folder = self.exports / key
        if not (folder / "model" / "manifest.json").is_file():
            return None
        with contextlib.suppress(OSError):  # a read-only cache still serves
            os.utime(folder)
        return Entry(key, folder)

    def entries(self) -> list[Entry]:
        if not self.exports.is_dir():
            return []
        found = [Entry(p.name, p) for p in self.exports.iterdir() if not p.name.startswith(".") and p.is_dir()]
        return sorted(found, key=lambda e: e.last_used(), reverse=True)

    def partials(self, key: str | None = None) -> list[Path]:
        if not self.exports.is_dir():
            return []
        return sorted(self.exports.glob(f".partial-{key or ''}*"))

    def partial(self, key: str) -> Path:
        """A fresh folder to export `key` into (the caller holds its lock)."""
        for stale in self.partials(key):  # left by an export that died: no one else exports `key`
            shutil.rmtree(stale, ignore_errors=True)
        folder = self.exports / f".partial-{key}-{os.getpid()}"
        folder.mkdir(parents=True)
        return folder

    def commit(self, key: str, partial: Path, source: dict[str, Any]) -> Entry:
        """Make a finished export the entry for `key`, at once."""
        (partial / "source.json").write_text(json.dumps({**source, "created": time.time()}, indent=1))
        partial.rename(self.exports / key)
        entry = self.entry(key)
        assert entry is not None
        return entry

    @contextlib.contextmanager
    def try_lock(self, key: str) -> Iterator[bool]:
        """Whether this process now holds `key`'s lock (held until the block ends)."""
        self.locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.locks / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    def prune(self, older_than_days: float | None) -> list[str]:
        """Remove the entries not used for `older_than_days` (every one when None) and the
        partial folders no export is writing; an entry being exported is left alone. What
        was removed, as lines."""
        removed = []
        cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
        for entry in self.entries():
            if cutoff is not None and entry.last_used() >= cutoff:
                continue
            with self.try_lock(entry.key) as held:
                if held:
                    name = entry.source().get("name", "?")
                    shutil.rmtree(entry.folder)
                    removed.append(f"{entry.key[:12]} {name}")
        for partial in self.partials():
            key = partial.name.removeprefix(".partial-").rsplit("-", 1)[0]
            with self.try_lock(key) as held:
                if held:
                    shutil.rmtree(partial, ignore_errors=True)
                    removed.append(f"{partial.name} (an unfinished export)")
        return removed
