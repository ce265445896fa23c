"""The sessions of one model share one copy of its weights (service/runtime/shared_weights.py),
on the real loader with real onnxruntime sessions (the tiny models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.runtime.loader import LoadedModel, load_model_dir
from service.settings import Settings

ROWS = [np.array([101, 2023, 3185, 2001, 2204, 102]), np.array([101, 2919, 102])]


def _load(tiny_repo: Path, **settings: object) -> LoadedModel:
    # One variant for every load compared: under auto each would time int8 against fp32 on its own.
    config = Settings(models=tiny_repo, intra_op_threads=1, variant="int8", **settings)  # type: ignore[arg-type]
    return load_model_dir(tiny_repo / "tiny-clf", config)


def test_every_session_of_a_model_gets_the_same_weights_and_answers_the_same(tiny_repo: Path) -> None:
    shared = _load(tiny_repo, instances=2)
    alone = _load(tiny_repo, instances=1, fast_lane=False, share_weights=False)
    try:
        sessions = shared.every_session
        assert len(sessions) == 2  # two instances (one thread each: no fast lane)
        first = sessions[0].shared_weights
        assert any("word_embeddings" in name for name, _ in first), [name for name, _ in first]
        for session in sessions[1:]:  # the very same buffers, not copies
            assert [(n, v.data_ptr()) for n, v in session.shared_weights] == [(n, v.data_ptr()) for n, v in first]
        assert alone.session.shared_weights == []
        expected = alone.session.run(ROWS)
        for session in sessions:
            np.testing.assert_array_equal(session.run(ROWS), expected)
    finally:
        shared.close()
        alone.close()


def test_nothing_is_shared_when_off_or_with_one_session(tiny_repo: Path) -> None:
    for settings in ({"instances": 2, "share_weights": False}, {"instances": 1, "fast_lane": False}):
        model = _load(tiny_repo, **settings)
        try:
            assert all(s.shared_weights == [] for s in model.every_session), settings
        finally:
            model.close()
