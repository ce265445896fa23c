"""A local Hugging Face hub cache in the library's own layout, written by the tests (no hub
is reachable here): models--<org>--<name>/blobs/<sha256>, snapshots/<commit>/<file> linking to
its blob, refs/<branch> naming the commit. huggingface_hub resolves an id from it as from a
cache it filled itself, with HF_HUB_OFFLINE=1 and HF_HOME pointing at it."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_hub_cache(hf_home: Path, repo_id: str, files: Path, commit: str = COMMIT, branch: str = "main") -> Path:
    """Put the files of folder `files` (recursively) into the cache as `repo_id` at `commit`,
    with `branch` pointing at it; the snapshot folder."""
    org, name = repo_id.split("/")
    repo = hf_home / "hub" / f"models--{org}--{name}"
    snapshot = repo / "snapshots" / commit
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / branch).write_text(commit)
    return snapshot
