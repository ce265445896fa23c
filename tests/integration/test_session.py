"""The runtime session on a real graph: IO binding's preallocated outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.runtime.session import CPU, OnnxSession


def _session(tiny_repo: Path, io_binding: bool) -> OnnxSession:
    return OnnxSession(
        tiny_repo / "tiny-emb" / "model.onnx",
        output="sentence_embedding",
        pad_token_id=0,
        providers=[CPU],
        threads=1,
        io_binding=io_binding,
    )


def test_output_buffers_are_sized_to_the_batch_and_reused(tiny_repo: Path) -> None:
    session = _session(tiny_repo, io_binding=True)
    first = session.output_buffer(3)
    assert first is not None and first.shape() == [3, 32]
    assert session.output_buffer(3) is first
    assert session.output_buffer(5).shape() == [5, 32]  # type: ignore[union-attr]


def test_bound_and_plain_runs_agree_across_batch_sizes(tiny_repo: Path) -> None:
    bound, plain = _session(tiny_repo, io_binding=True), _session(tiny_repo, io_binding=False)
    rng = np.random.default_rng(0)
    for rows in (1, 4, 1, 7, 4):  # sizes reused, so a stale buffer would show
        batch = [rng.integers(100, 2000, size=rng.integers(2, 20)).astype(np.int64) for _ in range(rows)]
        assert np.allclose(bound.run(batch), plain.run(batch), atol=1e-6)
