"""Resource names (AIP-122): parse ``collection/{id}/…`` patterns in one place."""

from __future__ import annotations

import re
import uuid
from functools import cache

from services.core import ids
from services.core.errors import FieldViolation, InvalidArgument

_SEGMENT = r"([^/]+)"


@cache
def _compile(pattern: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    variables = tuple(re.findall(r"\{(\w+)\}", pattern))
    regex = re.escape(pattern)
    for variable in variables:
        regex = regex.replace(re.escape("{" + variable + "}"), _SEGMENT)
    return re.compile(f"^{regex}$"), variables


def parse(name: str, pattern: str, *, field: str = "name") -> dict[str, str]:
    """``parse("settings/notes.format", "settings/{setting}")`` → ``{"setting": "notes.format"}``."""
    regex, variables = _compile(pattern)
    match = regex.match(name)
    if match is None:
        raise InvalidArgument(FieldViolation(field, f"must be a resource name of the form {pattern}"))
    return dict(zip(variables, match.groups(), strict=True))


def parse_id(name: str, pattern: str, *, field: str = "name") -> uuid.UUID:
    """The id in ``name`` of a one-variable ``pattern`` whose id is a UUID:
    ``parse_id("flows/…", "flows/{flow}")``; INVALID_ARGUMENT naming ``field``."""
    (value,) = parse(name, pattern, field=field).values()
    return ids.parse_uuid(value, field=field, what=f"name of the form {pattern}")


def format_name(pattern: str, **values: object) -> str:
    return pattern.format(**values)
