"""Known secret shapes never reach a model and never appear in generated notes."""

from __future__ import annotations

import json

import pytest

from services.core.ai import AI, LaneView, Preferences, SessionContext
from services.core.ai.anthropic_backend import AnthropicBackend
from services.core.ai.offline import OfflineBackend
from services.core.ai.redaction import redact
from tests.core.ai.transport import Replay

SECRETS = {
    "password assignment": ("password=Sup3rS3cret!", "Sup3rS3cret!"),
    "password with colon": ("Password: Winter2026!x", "Winter2026!x"),
    "bearer header": ("Authorization: Bearer abcdefghijklmnop1234567890", "abcdefghijklmnop1234567890"),
    "jwt": (
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "dozjgNryP4J3jVmNHl0w5N",
    ),
    "private key": (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAuZ8dJ1sQ8MlmF\n-----END RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEAuZ8dJ1sQ8MlmF",
    ),
    "openssh key": (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjEAAAAA",
    ),
    "url credentials": ("postgresql://admin:Db_Pa55word@db.example.com:5432/prod", "Db_Pa55word"),
    "ado connection string": ("Server=tcp:sql1;Database=crm;User ID=sa;Password=P@ssw0rd123;", "P@ssw0rd123"),
    "anthropic key": (
        "key sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
        "abcdefghijklmnopqrstuvwxyz012345",
    ),
    "aws access key": ("aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    "github token": ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    "api key config": ("api_key: 9f8e7d6c5b4a3210", "9f8e7d6c5b4a3210"),
    "client secret": ('client_secret="Zx9~Qp.Lm-42"', "Zx9~Qp.Lm-42"),
    "secure string": ('$pw = ConvertTo-SecureString "Autumn#2026" -AsPlainText -Force', "Autumn#2026"),
    "cli password flag": ("mysql -u root --password=R00tPass! -h db", "R00tPass!"),
}


@pytest.mark.parametrize("label", list(SECRETS))
def test_redact_removes_each_shape(label: str) -> None:
    text, secret = SECRETS[label]
    assert secret not in redact(f"before {text} after")
    assert "[REDACTED]" in redact(text)


def test_redact_keeps_ordinary_text() -> None:
    ordinary = (
        "mkdir -p /var/log/app && Restart-Service Spooler; user jdoe on host ws-042 saw error 0x80070005"
    )
    assert redact(ordinary) == ordinary


def _context() -> SessionContext:
    texts = [text for text, _ in SECRETS.values()]
    return SessionContext(
        ticket_ref="CW #9",
        title="Creds leak check",
        problem="Problem mentions " + texts[0],
        facts=tuple(texts[1:8]),
        lane=(
            LaneView(
                kind="script",
                title="run",
                status="failed",
                script_body="\n".join(texts[8:12]),
                output=texts[12],
            ),
            LaneView(kind="check", title="check", status="done", detail=texts[13], output=texts[14]),
        ),
        resolution_summary="Rotated everything",
    )


async def test_nothing_secret_reaches_the_model() -> None:
    replay = Replay([(200, "fix_tool_use.json")])
    backend = AnthropicBackend(
        api_key="k", fast_model="f", deep_model="d", http_client=replay.client(), max_retries=0
    )
    await AI(backend).suggest_fix(_context(), Preferences(redact=True))
    sent = json.dumps(replay.requests[0])
    for label, (_, secret) in SECRETS.items():
        assert secret not in sent, label


async def test_nothing_secret_in_generated_notes() -> None:
    ai = AI(OfflineBackend())
    for fmt in ("markdown", "plain", "html"):
        note = await ai.write_resolution_note(_context(), Preferences(redact=True, fmt=fmt))
        package = await ai.write_escalation_package(_context(), Preferences(redact=True, fmt=fmt))
        for label, (_, secret) in SECRETS.items():
            assert secret not in note.text, (fmt, label)
            assert secret not in package.text, (fmt, label)
    unredacted = await ai.write_resolution_note(_context(), Preferences(redact=False))
    assert "Sup3rS3cret!" in unredacted.text
