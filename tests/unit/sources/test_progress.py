"""An export's stages as the user sees them: one log line per finished stage off a terminal,
a tqdm bar on one."""

from __future__ import annotations

import logging

import pytest

from service.sources.progress import Progress, stage_count


def test_off_a_terminal_each_finished_stage_is_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bertserve")
    progress = Progress("my-model", stage_count(int8=True, fp16=False), terminal=False)
    for stage in ("load", "export", "verify fp32", "quantize int8", "verify int8"):
        progress.begin(stage)
    progress.close(ok=True)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" done in ")[0] for line in lines] == [
        "export my-model: load",
        "export my-model: export",
        "export my-model: verify fp32",
        "export my-model: quantize int8",
        "export my-model: verify int8",
    ]
    assert all(line.endswith(" s") for line in lines)
    assert caplog.records[0].stage == "load"  # type: ignore[attr-defined]


def test_a_failed_export_does_not_say_its_last_stage_was_done(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bertserve")
    progress = Progress("my-model", stage_count(int8=False, fp16=False), terminal=False)
    progress.begin("load")
    progress.begin("export")
    progress.close(ok=False)
    assert [r.getMessage().split(" done")[0] for r in caplog.records] == ["export my-model: load"]


def test_on_a_terminal_a_bar_counts_the_stages(capsys: pytest.CaptureFixture[str]) -> None:
    assert stage_count(int8=True, fp16=True) == 7
    progress = Progress("my-model", stage_count(int8=False, fp16=False), terminal=True)
    for stage in ("load", "export", "verify fp32"):
        progress.begin(stage)
    progress.close(ok=True)
    err = capsys.readouterr().err
    assert "export my-model: 3/3 |" in err
    assert "verify fp32" in err
