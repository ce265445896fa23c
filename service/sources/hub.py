"""A hub id (`org/name` or `org/name@revision`) to a local folder, by huggingface_hub's own
`snapshot_download`: its cache (HF_HOME, HF_HUB_CACHE), HF_HUB_OFFLINE and HF_TOKEN apply as
they do to every Hugging Face tool. Each way it can fail is one line saying what to do."""

from __future__ import annotations

import re
from pathlib import Path

from service.sources.detect import SourceError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
# What the export reads; other formats of the same weights (ONNX, TensorFlow, Flax, ...) stay
# on the hub.
IGNORED = ["*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "*.gguf", "coreml/*", "*.mlmodel"]


def looks_like_hub_id(text: str) -> bool:
    """Not an existing path, and shaped like `org/name[@revision]`."""
    return not Path(text).exists() and HUB_ID.match(text) is not None


def split_id(text: str) -> tuple[str, str | None]:
    repo_id, _, revision = text.partition("@")
    return repo_id, revision or None


def download(text: str) -> Path:
    """The snapshot folder of the hub id, from the cache or fetched."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, revision = split_id(text)
    try:
        return Path(snapshot_download(repo_id=repo_id, revision=revision, ignore_patterns=IGNORED))
    except GatedRepoError as exc:
        raise SourceError(
            f"{text} is a gated model: accept its conditions on the hub, then set HF_TOKEN to a token of that account"
        ) from exc
    except RevisionNotFoundError as exc:
        raise SourceError(f"{text}: revision {revision} is not on the hub") from exc
    except RepositoryNotFoundError as exc:
        raise SourceError(f"{text} is not on the hub, or is private: set HF_TOKEN to a token that can read it") from exc
    except LocalEntryNotFoundError as exc:
        raise SourceError(
            f"{text} is not in the Hugging Face cache and cannot be downloaded (offline, or no network): "
            f"pre-download it with `hf download {repo_id}{f' --revision {revision}' if revision else ''}`, "
            "or mount a cache that has it at HF_HOME"
        ) from exc
    except Exception as exc:  # any of the library's other errors (an incomplete snapshot, HTTP): one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{text}: {first}") from exc
