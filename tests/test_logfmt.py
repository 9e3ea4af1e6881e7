"""JSON logs: one parseable object per line with the fields log pipelines expect."""

from __future__ import annotations

import json
import logging

from wasmlet.logfmt import JsonFormatter


def test_json_line_has_fields_extras_and_errors() -> None:
    record = logging.makeLogRecord(
        {"name": "wasmlet.agent", "levelname": "WARNING", "msg": "pulled %s",
         "args": ("m",), "app": "web"}
    )  # fmt: skip
    out = json.loads(JsonFormatter().format(record))
    assert out["level"] == "warning" and out["logger"] == "wasmlet.agent"
    assert out["msg"] == "pulled m" and out["app"] == "web" and out["ts"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["error"]
