"""The rules of prompts: names, texts, and the override / reset state machine.

Prompts are the text every AI task sends a model (see ``settings_0004``). The
global defaults ship in migrations; an account's team_admin overrides one
(a new version, active at once) or resets it (back to the default; the
override stays in the history). The etag of a prompt is its version.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from services.core import names
from services.core.errors import Aborted, FieldViolation, InvalidArgument, not_found
from services.settings import storage
from services.settings.storage import StoredPrompt

PATTERN = "prompts/{prompt}"
MAX_TEXT_CHARS = 20_000
_SLUG = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*", re.ASCII)


def slug_of(name: str, *, field: str) -> str:
    """The slug ``name`` names; INVALID_ARGUMENT when it is not `prompts/{slug}`."""
    slug = names.parse(name, PATTERN, field=field)["prompt"]
    if len(slug) > 64 or not _SLUG.fullmatch(slug):
        raise InvalidArgument(
            FieldViolation(field, "the slug is lower-case words joined by dots, at most 64 characters")
        )
    return slug


def checked_text(value: str, *, field: str) -> str:
    if not value.strip():
        raise InvalidArgument(FieldViolation(field, "must not be blank"))
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidArgument(FieldViolation(field, f"is longer than {MAX_TEXT_CHARS} characters"))
    return value


async def get(conn: AsyncConnection, slug: str) -> StoredPrompt:
    found = await storage.active_prompt(conn, slug)
    if found is None:
        raise not_found("prompt", names.format_name(PATTERN, prompt=slug))
    return found


async def write(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    slug: str,
    body: str | None,
    expected_version: int | None,
) -> StoredPrompt:
    """Overrides ``slug`` with ``body`` for the account, or (``body`` None)
    resets it to the global default. NOT_FOUND before the etag is looked at;
    ABORTED when ``expected_version`` is not the current version."""
    await storage.lock_prompt(conn, account_id=account_id, slug=slug)
    current = await get(conn, slug)
    if expected_version is not None and expected_version != current.version:
        raise Aborted(
            f"prompt {slug!r} changed since etag {expected_version}; read it again", reason="ETAG_MISMATCH"
        )
    if body is None and current.account_id is None:
        return current  # already the default
    await storage.deactivate_override(conn, account_id=account_id, slug=slug)
    if body is None:
        return await get(conn, slug)
    return await storage.insert_override(
        conn, account_id=account_id, user_id=user_id, slug=slug, purpose=current.purpose, body=body
    )
