"""`bertserve cache list` and `bertserve cache prune`: the export cache, shown and cleaned."""

from __future__ import annotations

import time

from service.settings import Settings
from service.sources.cache import Cache, default_dir


def _cache() -> Cache:
    return Cache(Settings().cache_dir or default_dir())


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return "just now"


def list_cache() -> int:
    cache = _cache()
    entries = cache.entries()
    print(f"{cache.root}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
    if entries:
        print(f"{'KEY':<13}{'NAME':<24}{'TASK':<9}{'VARIANTS':<15}{'SIZE':>9}  {'USED':<10}  SOURCE")
    now = time.time()
    for entry in entries:
        source = entry.source()
        variants = "+".join(["fp32"] + [v for v in ("int8", "fp16") if (entry.model / f"model.{v}.onnx").is_file()])
        print(
            f"{entry.key[:12]:<13}{source.get('name', '?')!s:<24}{source.get('task', '?')!s:<9}{variants:<15}"
            f"{entry.size() / 1e6:>7.1f}MB  {_age(now - entry.last_used()):<10}  {source.get('source', '?')}"
        )
    for partial in cache.partials():
        print(f"{partial.name}: an unfinished export (in progress, or one that died: `cache prune` removes it)")
    return 0


def prune_cache(older_than_days: float | None) -> int:
    cache = _cache()
    removed = cache.prune(older_than_days)
    for line in removed:
        print(f"removed {line}")
    print(f"{cache.root}: {len(removed)} removed, {len(cache.entries())} kept")
    return 0
