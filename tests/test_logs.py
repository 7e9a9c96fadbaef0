"""Log lines: JSON by default with the alert's fields, or readable text."""

from __future__ import annotations

import json
import logging

from shared.logs import JsonFormatter, TextFormatter


def record(**extra) -> logging.LogRecord:
    r = logging.LogRecord("openfero.dispatcher", logging.INFO, __file__, 1, "job %s", ("created",), None)
    for key, value in extra.items():
        setattr(r, key, value)
    return r


def test_json_lines_carry_the_alert_fields() -> None:
    line = json.loads(JsonFormatter().format(record(event="job.created", fingerprint="2b53", message_id="m1", attempt=2, job="fix-1")))
    assert line["msg"] == "job created" and line["level"] == "info"
    assert (line["fingerprint"], line["message_id"], line["attempt"], line["job"]) == ("2b53", "m1", 2, "fix-1")


def test_text_lines_are_readable_and_keep_the_fields() -> None:
    line = TextFormatter().format(record(event="job.created", fingerprint="2b53"))
    assert "info    job created" in line and "event=job.created fingerprint=2b53" in line
    assert "\n" not in line
