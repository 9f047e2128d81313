"""Credentials in scripts: found (``services.core.ai.redaction``), turned into
secret parameters in drafts, refused in templates.

- A draft never holds a credential: each secret found in its script is
  replaced by a ``{{parameter}}`` declared ``secret`` (no default, given at
  render time), named for what it replaced (``password``, ``api_key``, …;
  ``password_2`` for a second password), the same secret everywhere by the
  same parameter. The draft records each replacement as a ``Redaction``
  (parameter, kind, line), never the secret.
- A template's body and parameter defaults are checked on create and update:
  a detected secret is INVALID_ARGUMENT (reason ``SECRET_DETECTED``, a field
  violation naming kind and line), unless a team_admin sets
  ``allow_detected_secrets``. A secret parameter never has a default.

A parameter default is checked as ``name=default``, so that its name gives
the value the context a secret needs ("password=Winter2024!").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.core.ai.redaction import Finding, find_secrets
from services.core.auth import Principal, Role
from services.core.errors import FieldViolation, InvalidArgument
from services.library import templates

REASON = "SECRET_DETECTED"

# Parameter names by kind; other kinds: `token` for tokens, `api_key` for
# keys, `secret` for the rest.
_PARAMETER = {
    "password": "password",
    "pin": "pin",
    "one_time_code": "code",
    "recovery_code": "recovery_code",
    "product_key": "product_key",
    "private_key": "private_key",
    "basic_auth": "credentials",
    "aws_access_key": "aws_access_key_id",
    "aws_secret_key": "aws_secret_access_key",
    "azure_storage_key": "account_key",
    "account_key": "account_key",
    "azure_sas_signature": "sas_signature",
    "sas_signature": "sas_signature",
    "jwt": "token",
    "bearer_token": "token",
}


def parameter_base(kind: str) -> str:
    if kind in _PARAMETER:
        return _PARAMETER[kind]
    if kind.endswith("token"):
        return "token"
    if kind.endswith("_key"):
        return "api_key"
    return "secret"


@dataclass(frozen=True, slots=True)
class Secured:
    """A script with its credentials replaced: the body, its parameters (the
    given ones first, then the new secret ones) and what was replaced."""

    body: str
    parameters: list[dict[str, Any]]
    redactions: list[dict[str, Any]]


def secure(body: str, parameters: Sequence[Mapping[str, Any]] = ()) -> Secured:
    """``body`` with each secret found replaced by a secret parameter's
    placeholder. ``parameters``: those already declared (kept, their names
    and the body's placeholders never reused); a declared default that holds
    a secret is dropped and its parameter marked secret."""
    params = [dict(p) for p in parameters]
    for param in params:
        if param.get("default") and _default_findings(param["name"], param["default"]):
            param["default"] = ""
            param["secret"] = True
    findings = find_secrets(body)
    if not findings:
        return Secured(body, params, [])
    taken = {p["name"] for p in params} | templates.placeholders(body)
    by_value: dict[str, str] = {}
    redactions: list[dict[str, Any]] = []

    def name_for(finding: Finding) -> str:
        value = body[finding.start : finding.end]
        if value not in by_value:
            base = parameter_base(finding.kind)
            name, n = base, 2
            while name in taken:
                name, n = f"{base}_{n}", n + 1
            taken.add(name)
            by_value[value] = name
            params.append(
                {
                    "name": name,
                    "description": f"Replaces the {finding.kind.replace('_', ' ')} found in the script",
                    "required": True,
                    "default": "",
                    "secret": True,
                }
            )
        redactions.append({"parameter": by_value[value], "kind": finding.kind, "line": finding.line(body)})
        return "{{" + by_value[value] + "}}"

    secured = _replace(body, findings, name_for)
    return Secured(secured, params, redactions)


def _replace(body: str, findings: Sequence[Finding], placeholder: Any) -> str:
    parts, at = [], 0
    for finding in findings:
        parts += [body[at : finding.start], placeholder(finding)]
        at = finding.end
    return "".join([*parts, body[at:]])


def _default_findings(name: str, default: str) -> list[Finding]:
    probe = f"{name}={default}"
    return [f for f in find_secrets(probe) if f.end > len(name) + 1]


def keep_secret(
    body: str, parameters: Sequence[Mapping[str, Any]], before: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``parameters`` (say, a model's, for ``body``) with the secret ones of
    ``before`` still secret, without default, and declared while ``body``
    uses them."""
    was_secret = {p["name"]: p for p in before if p.get("secret")}
    merged = []
    for param in parameters:
        param = dict(param)
        if param["name"] in was_secret:
            param.update(secret=True, default="")
        merged.append(param)
    declared = {p["name"] for p in merged}
    used = templates.placeholders(body)
    merged += [dict(p) for name, p in was_secret.items() if name not in declared and name in used]
    return merged


def check_template(
    principal: Principal,
    body: str,
    parameters: Sequence[Mapping[str, Any]],
    *,
    prefix: str,
    allow: bool,
) -> None:
    """INVALID_ARGUMENT when ``body`` or a parameter default holds a detected
    secret (unless ``allow``, which needs team_admin: PERMISSION_DENIED
    otherwise), or a secret parameter has a default."""
    if allow:
        principal.require(Role.TEAM_ADMIN)
    violations = [
        FieldViolation(f"{prefix}.parameters[{i}].default", "a secret parameter has no default")
        for i, p in enumerate(parameters)
        if p.get("secret") and p.get("default")
    ]
    if not allow:
        found = find_secrets(body)
        if found:
            what = "; ".join(f"{f.kind} on line {f.line(body)}" for f in found)
            violations.append(
                FieldViolation(
                    f"{prefix}.body",
                    f"holds what looks like a secret ({what}): put a {{{{parameter}}}} marked secret "
                    "in its place, or (team_admin) set allow_detected_secrets",
                )
            )
        for i, param in enumerate(parameters):
            hits = _default_findings(param["name"], param["default"]) if param.get("default") else []
            if hits:
                violations.append(
                    FieldViolation(
                        f"{prefix}.parameters[{i}].default",
                        f"holds what looks like a secret ({hits[0].kind}): "
                        "mark the parameter secret, with no default",
                    )
                )
    if violations:
        reason = REASON if any("looks like a secret" in v.description for v in violations) else None
        raise InvalidArgument(violations, reason=reason)
