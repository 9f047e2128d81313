"""Template rules: parameter names, placeholders, tags and rendering."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from flowpilot.library.v1 import library_pb2 as pb

from services.core.errors import FieldViolation, InvalidArgument

PARAMETER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]*)\s*\}\}")
MAX_VALUE = 4096
MAX_TAG = 40


def placeholders(body: str) -> set[str]:
    return set(PLACEHOLDER.findall(body))


def check_parameters(body: str, params: Sequence[pb.Parameter], *, prefix: str) -> list[dict[str, Any]]:
    """Valid, unique parameter names, and every placeholder declared."""
    violations: list[FieldViolation] = []
    seen: set[str] = set()
    for index, param in enumerate(params):
        if not PARAMETER_NAME.match(param.name):
            violations.append(
                FieldViolation(
                    f"{prefix}.parameters[{index}].name", "must be a letter then letters, digits or _"
                )
            )
        elif param.name in seen:
            violations.append(
                FieldViolation(f"{prefix}.parameters[{index}].name", f"{param.name!r} is declared twice")
            )
        seen.add(param.name)
    undeclared = sorted(placeholders(body) - seen)
    if undeclared:
        violations.append(
            FieldViolation(f"{prefix}.body", "uses undeclared parameters: " + ", ".join(undeclared))
        )
    if violations:
        raise InvalidArgument(violations)
    return [
        {
            "name": p.name,
            "description": p.description,
            "required": p.required,
            "default": p.default,
            "secret": p.secret,
        }
        for p in params
    ]


def check_tags(tags: Sequence[str], *, field: str) -> list[str]:
    cleaned = []
    for index, tag in enumerate(tags):
        tag = tag.strip().lower()
        if not tag or len(tag) > MAX_TAG:
            raise InvalidArgument(FieldViolation(f"{field}[{index}]", f"must be 1 to {MAX_TAG} characters"))
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


def render(body: str, params: Sequence[Mapping[str, Any]], values: Mapping[str, str]) -> str:
    """``body`` filled from ``values`` (or defaults). Errors name parameters,
    never values; nothing here is logged, a secret parameter's value least of
    all."""
    declared = {p["name"]: p for p in params}
    violations = [
        FieldViolation(f"values[{k}]", "is not a parameter of this template")
        for k in sorted(set(values) - set(declared))
    ]
    violations += [
        FieldViolation(f"values[{k}]", f"must be at most {MAX_VALUE} characters")
        for k, v in sorted(values.items())
        if len(v) > MAX_VALUE
    ]
    filled: dict[str, str] = {}
    for name, param in declared.items():
        if name in values:
            filled[name] = values[name]
        elif param.get("default"):
            filled[name] = param["default"]
        elif param.get("required", True):
            violations.append(FieldViolation(f"values[{name}]", "is required"))
        else:
            filled[name] = ""
    if violations:
        raise InvalidArgument(violations)
    return PLACEHOLDER.sub(lambda m: filled.get(m.group(1), m.group(0)), body)
