"""The JSON log formatter redacts secrets that reach a log line by mistake,
and what that costs per line."""

from __future__ import annotations

import json
import logging
import time

from services.core import logs

ACCOUNT = "11111111-2222-3333-4444-555555555555"


def _line(
    message: str, *args: object, fields: dict[str, object] | None = None, **kwargs: object
) -> dict[str, object]:
    record = logging.getLogger("flowpilot.test").makeRecord(
        "flowpilot.test", logging.WARNING, "", 0, message, args, None, None, {"fields": fields or {}}
    )
    for key, value in kwargs.items():
        setattr(record, key, value)
    parsed: dict[str, object] = json.loads(logs.JsonFormatter("test").format(record))
    return parsed


def test_secrets_in_messages_fields_and_bound_values_are_redacted() -> None:
    token = logs.bind(request_id="retry pw: Hunter22x", account_id=ACCOUNT)
    try:
        line = _line(
            "connect failed for %s",
            "postgresql://app:Db_Pa55word@db01:5432/crm",
            fields={"error": "login failed; password=Sup3rS3cret!", "attempts": 3, "code": "UNAVAILABLE"},
        )
    finally:
        logs.unbind(token)
    text = json.dumps(line)
    for secret in ("Db_Pa55word", "Sup3rS3cret!", "Hunter22x"):
        assert secret not in text
    assert line["message"] == "connect failed for postgresql://app:[REDACTED]@db01:5432/crm"
    assert line["error"] == "login failed; password=[REDACTED]"
    assert line["attempts"] == 3 and line["code"] == "UNAVAILABLE" and line["account_id"] == ACCOUNT


def test_exceptions_are_redacted() -> None:
    try:
        raise RuntimeError("net use Z: \\\\fs01\\share /user:CONTOSO\\svc N3tUs3P@ss failed")
    except RuntimeError:
        record = logging.getLogger("flowpilot.test").makeRecord(
            "flowpilot.test", logging.ERROR, "", 0, "round failed", (), __import__("sys").exc_info()
        )
    line = json.loads(logs.JsonFormatter("test").format(record))
    assert "N3tUs3P@ss" not in line["exception"] and "[REDACTED]" in line["exception"]


def test_ordinary_lines_are_unchanged() -> None:
    line = _line("rpc", fields={"method": "/flowpilot.library.v1.LibraryService/GetScriptTemplate"})
    assert line["message"] == "rpc"
    assert line["method"] == "/flowpilot.library.v1.LibraryService/GetScriptTemplate"
    assert logs.clean("outbox delivery failed: UNAVAILABLE") == "outbox delivery failed: UNAVAILABLE"


def test_what_redaction_adds_to_an_access_line() -> None:
    """An access line's message and request id, seen before or an id: a
    lookup, no scan. Printed with ``pytest -s``."""
    formatter = logs.JsonFormatter("test")
    token = logs.bind(
        method="/flowpilot.sessions.v1.SessionsService/GetSession",
        request_id="3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        account_id=ACCOUNT,
    )
    try:
        record = logging.getLogger("flowpilot.access").makeRecord(
            "flowpilot.access",
            logging.INFO,
            "",
            0,
            "rpc",
            (),
            None,
            None,
            {"fields": {"code": "OK", "duration_ms": 1.2}},
        )
        rounds = 20_000
        started = time.perf_counter()
        for _ in range(rounds):
            formatter.format(record)
        with_redaction = (time.perf_counter() - started) / rounds
        started = time.perf_counter()
        for _ in range(rounds):
            logs.clean("rpc")
            logs.clean("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
        redaction = (time.perf_counter() - started) / rounds
    finally:
        logs.unbind(token)
    unseen = [f"outbox delivery failed for account {n}: UNAVAILABLE, token bucket {n}" for n in range(500)]
    started = time.perf_counter()
    for message in unseen:
        logs.clean(message)
    first_seen = (time.perf_counter() - started) / len(unseen)
    print(
        f"\naccess line {with_redaction * 1e6:.1f} us, of which redaction {redaction * 1e6:.1f} us; "
        f"a message never seen before {first_seen * 1e6:.0f} us"
    )
    assert redaction < 20e-6
