"""When tracing is on, decided from the OTEL_* variables alone (nothing imported to decide),
and which requests get no span."""

from __future__ import annotations

import pytest

from service.tracing import excluded, fastapi_telemetry, wanted

ENDPOINT = "http://collector:4318"


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),  # nowhere to send
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{ENDPOINT}/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),  # the spec's default endpoint, localhost:4318
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, False),
        ({"OTEL_TRACES_EXPORTER": " None ", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, False),
        ({"OTEL_TRACES_EXPORTER": "none,otlp"}, True),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, False),
        ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, True),
    ],
)
def test_on_only_when_asked_for(environ: dict[str, str], on: bool) -> None:
    assert wanted(environ) is on


def test_off_turns_fastapis_own_instrumentation_off() -> None:
    config = fastapi_telemetry(None)
    assert config["tracing"] is False and config["metrics"] is False and config["logs"] is False
    assert config["auto_configure"] is False


def test_probes_and_scrapes_are_not_traced_by_default() -> None:
    skip = excluded({})
    assert skip({"path": "/health/ready"}) and skip({"path": "/health/live"}) and skip({"path": "/metrics"})
    assert not skip({"path": "/classify"}) and not skip({"path": "/v1/embeddings"})


def test_excluded_urls_follow_the_opentelemetry_variable() -> None:
    skip = excluded({"OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": "^/embed, ^/v1/"})
    assert skip({"path": "/embed"}) and skip({"path": "/v1/embeddings"})
    assert not skip({"path": "/classify"}) and not skip({"path": "/health/ready"})
    assert not excluded({"OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": ""})({"path": "/health/ready"})  # trace all
    assert excluded({"OTEL_PYTHON_EXCLUDED_URLS": "tokenize"})({"path": "/tokenize"})


def test_a_bad_pattern_falls_back_to_the_default() -> None:
    skip = excluded({"OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": "(unclosed"})
    assert skip({"path": "/metrics"}) and not skip({"path": "/classify"})
