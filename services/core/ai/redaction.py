"""Redaction of secrets: passwords, API keys, bearer tokens, JWTs, private
keys and connection strings become ``[REDACTED]``.

Applied to everything sent to a model and to every generated note when the
account's ``notes.redact_sensitive`` setting is on (the default). Patterns
favour false positives over leaks.
"""

from __future__ import annotations

import re

MASK = "[REDACTED]"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # PEM private keys, whole block.
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.S), MASK),
    # Authorization headers and bare bearer tokens.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*"), rf"\1 {MASK}"),
    # JSON Web Tokens anywhere.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MASK),
    # Well-known key shapes: Anthropic/OpenAI, AWS access keys, GitHub, Slack, Google.
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), MASK),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"), MASK),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), MASK),
    # URLs with credentials: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+):[^\s@/]+@"), rf"\1:{MASK}@"),
    # Key=value connection strings and configs (ADO.NET, ODBC, env files).
    (
        re.compile(
            r"(?i)\b(password|passwd|pwd|pass|secret|client[_-]?secret|api[_-]?key|apikey|access[_-]?key|"
            r"secret[_-]?key|auth[_-]?token|access[_-]?token|refresh[_-]?token|token|private[_-]?key|"
            r"account[_-]?key|shared[_-]?access[_-]?key)(\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s;,&]+)"
        ),
        rf"\1\2{MASK}",
    ),
    # PowerShell secure strings and command-line password flags.
    (re.compile(r"(?i)(ConvertTo-SecureString\s+(-String\s+)?)(\"[^\"]*\"|'[^']*')"), rf"\1\"{MASK}\""),
    (re.compile(r"(?i)(\s-(password|pass|pwd)\s+)(\"[^\"]*\"|'[^']*'|\S+)"), rf"\1{MASK}"),
    (re.compile(r"(?i)(\s--(password|pass|token|secret|api-key)[= ])(\"[^\"]*\"|'[^']*'|\S+)"), rf"\1{MASK}"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
