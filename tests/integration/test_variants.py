"""BERTSERVE_VARIANT=auto on the CPU times int8 against fp32 at load, on real sessions of the
tiny classifier (which has both), serves the one the CPU's instructions call for (the timing
where they are unknown), and frees the other; /models says which and why. Which one serves
depends on the machine: what is checked is that the choice follows `decide` on this CPU's
flags and timings (pinned on given figures in tests/unit/runtime/test_variants.py) and that
the other session is gone."""

from __future__ import annotations

import gc
import logging
import shutil
import weakref
from pathlib import Path
from typing import Any

import pytest

from service.manifest import Manifest
from service.runtime.loader import load_model_dir
from service.runtime.session import CPU, OnnxSession
from service.runtime.variants import decide, int8_instructions, probe_batches, serve_faster
from service.settings import Settings
from tests.integration.conftest import Client


@pytest.fixture
def repo(tiny_repo: Path, tmp_path: Path) -> Path:
    """A copy: the sessions of its graphs are this test's alone."""
    shutil.copytree(tiny_repo, tmp_path / "models")
    return tmp_path / "models"


def _opener(directory: Path, opened: dict[str, weakref.ref[Any]], held: list[OnnxSession] | None = None) -> Any:
    """Opens real sessions, as the loader does; `opened` gets a weak reference to each
    onnxruntime session, `held` (a caller still holding them) the sessions themselves."""
    manifest = Manifest.read(directory)

    def open_variant(variant: str) -> OnnxSession:
        session = OnnxSession(
            directory / manifest.variants[variant].file,
            output=manifest.output,
            pad_token_id=manifest.pad_token_id,
            providers=[CPU],
            threads=1,
        )
        opened[variant] = weakref.ref(session._session)
        if held is not None:
            held.append(session)
        return session

    return open_variant


def test_the_faster_is_kept_and_the_other_freed(repo: Path) -> None:
    opened: dict[str, weakref.ref[Any]] = {}
    held: list[OnnxSession] = []
    kept, choice = serve_faster(_opener(repo / "tiny-clf", opened, held), probe_batches(64, 5), int8_instructions())
    assert sorted(opened) == ["fp32", "int8"]
    # Closed, not merely dropped: freed even while something still refers to the loser.
    (loser_session,) = [s for s in held if s is not kept]
    assert "_session" not in loser_session.__dict__
    assert choice.int8_ms is not None and choice.fp32_ms is not None
    assert choice == decide(choice.int8_ms, choice.fp32_ms, int8_instructions())
    loser = "fp32" if choice.variant == "int8" else "int8"
    gc.collect()
    assert opened[loser]() is None, "the slower variant's session is still alive"
    assert opened[choice.variant]() is kept._session
    assert kept.run(probe_batches(64, 5)[0]).shape == (1, 3)
    kept.close()


def test_when_the_second_does_not_open_the_first_is_freed(repo: Path) -> None:
    opened: dict[str, weakref.ref[Any]] = {}
    open_variant = _opener(repo / "tiny-clf", opened)

    def failing(variant: str) -> OnnxSession:
        if variant == "fp32":
            raise RuntimeError("fp32 does not open")
        return open_variant(variant)  # type: ignore[no-any-return]

    with pytest.raises(RuntimeError, match="fp32 does not open"):
        serve_faster(failing, probe_batches(64, 5), int8_instructions())
    gc.collect()
    assert list(opened) == ["int8"] and opened["int8"]() is None


def test_the_loader_serves_every_session_from_the_chosen_graph(repo: Path) -> None:
    """Instances and fast lane all of the winner (the same shared weights), none of the loser."""
    model = load_model_dir(repo / "tiny-clf", Settings(models=repo, instances=2))
    try:
        assert model.choice is not None and model.choice.variant == model.variant
        assert model.choice.int8_ms is not None and model.choice.fp32_ms is not None
        assert model.choice == decide(model.choice.int8_ms, model.choice.fp32_ms, int8_instructions())
        assert len(model.sessions) == 2
        weights = [[v.data_ptr() for _, v in s.shared_weights] for s in model.every_session]
        assert weights[0] and weights.count(weights[0]) == len(weights)
        served = Manifest.read(repo / "tiny-clf").variants[model.variant].file
        assert model.sha256 == Manifest.read(repo / "tiny-clf").files[served]
    finally:
        model.close()


async def test_models_reports_the_choice_and_its_timings(
    make_client: Client, repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bertserve")
    async with make_client(models=repo) as c:
        listed = {m["name"]: m for m in (await c.get("/models")).json()["models"]}
        clf = listed["tiny-clf"]
        choice = clf["variant_choice"]
        assert clf["variant"] in ("int8", "fp32")
        assert choice["int8_ms"] > 0 and choice["fp32_ms"] > 0
        made = c.app.state.bertserve.models["tiny-clf"].model.choice  # type: ignore[attr-defined]
        assert made == decide(made.int8_ms, made.fp32_ms, int8_instructions()) and made.variant == clf["variant"]
        assert choice == {"int8_ms": round(made.int8_ms, 3), "fp32_ms": round(made.fp32_ms, 3), "reason": made.reason}
        assert choice["reason"].startswith("auto: ")
        assert listed["tiny-emb"]["variant"] == "fp32"
        assert listed["tiny-emb"]["variant_choice"] == {
            "int8_ms": None,
            "fp32_ms": None,
            "reason": "auto: fp32 on the CPU (no int8 variant exported)",
        }
        # A rescan cannot time: the model is unchanged whichever variant won.
        r = await c.post("/admin/reload")
        assert r.json()["unchanged"] == ["tiny-clf", "tiny-emb"], r.text
    timed = [r for r in caplog.records if r.getMessage() == "variant timed"]
    assert [getattr(r, "model", None) for r in timed] == ["tiny-clf"]


async def test_an_explicit_variant_is_served_untimed(
    make_client: Client, repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bertserve")
    shutil.rmtree(repo / "tiny-emb")  # it has no int8
    for variant in ("int8", "fp32"):
        async with make_client(models=repo, variant=variant) as c:
            (clf,) = (await c.get("/models")).json()["models"]
        assert clf["variant"] == variant
        assert clf["variant_choice"] == {"int8_ms": None, "fp32_ms": None, "reason": f"BERTSERVE_VARIANT={variant}"}
    assert not [r for r in caplog.records if r.getMessage() == "variant timed"]
