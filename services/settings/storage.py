"""SQL for account settings. Functions take the RPC's connection; none commits.

Writes merge one key into the JSONB document inside the upsert itself, so two
concurrent writes of different keys both survive, and the etag check happens
in the same statement, so a stale etag can never overwrite.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import bindparam

from services.core.db import Database, TenantRead


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """What the account stored for one key; ``has_value`` False means default."""

    has_value: bool
    value: Any
    revision: int
    update_time: datetime | None


NEVER_SET = StoredEntry(has_value=False, value=None, revision=0, update_time=None)


def _entry(raw: dict[str, Any] | None) -> StoredEntry:
    if not raw:
        return NEVER_SET
    return StoredEntry(
        has_value="value" in raw,
        value=raw.get("value"),
        revision=int(raw["revision"]),
        update_time=datetime.fromisoformat(raw["update_time"]),
    )


# The tenant read function this storage calls (settings_0003; services.core.readpool).
READ_PREFERENCES = TenantRead("settings.read_preferences", ())


async def get_entries(db: Database, account_id: uuid.UUID) -> dict[str, StoredEntry]:
    """Every key the caller's account has stored, in one round trip (tenant read function)."""
    rows = await db.read(READ_PREFERENCES, account_id)
    if not rows:
        return {}
    return {key: _entry(raw) for key, raw in rows[0].preferences.items()}


# The entry written for a key: the caller's part plus revision, time and author.
_NEW_ENTRY = """CAST(:entry AS jsonb) || jsonb_build_object(
    'revision', {revision}, 'update_time', now(), 'updated_by', CAST(:user_id AS text))"""

# First write of the account creates the row; later ones merge the key in.
# With an expected revision of 0 ("never set"), the merge happens only if the
# key is still unset. Rows are never deleted, so an expected revision above 0
# can only match an existing row: that case is a plain conditional UPDATE.
_UPSERT = text(
    f"""
    INSERT INTO settings.account_settings AS s (account_id, preferences, revision)
    VALUES (:account_id, jsonb_build_object(CAST(:key AS text), {_NEW_ENTRY.format(revision=1)}), 1)
    ON CONFLICT (account_id) DO UPDATE
    SET preferences = s.preferences
            || jsonb_build_object(CAST(:key AS text), {_NEW_ENTRY.format(revision="s.revision + 1")}),
        revision = s.revision + 1,
        update_time = now()
    WHERE CAST(:expected AS bigint) IS NULL
       OR (s.preferences -> CAST(:key AS text)) IS NULL
    RETURNING s.preferences -> CAST(:key AS text) AS entry
    """
).bindparams(bindparam("entry", type_=JSONB))

_UPDATE_IF_CURRENT = text(
    f"""
    UPDATE settings.account_settings AS s
    SET preferences = s.preferences
            || jsonb_build_object(CAST(:key AS text), {_NEW_ENTRY.format(revision="s.revision + 1")}),
        revision = s.revision + 1,
        update_time = now()
    WHERE CAST(s.preferences -> CAST(:key AS text) ->> 'revision' AS bigint) = CAST(:expected AS bigint)
    RETURNING s.preferences -> CAST(:key AS text) AS entry
    """
).bindparams(bindparam("entry", type_=JSONB))


async def write_entry(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    key: str,
    value: Any,
    reset: bool,
    expected_revision: int | None,
) -> StoredEntry | None:
    """Sets (or, with ``reset``, clears) one key. None when the etag was stale."""
    entry: dict[str, Any] = {} if reset else {"value": value}
    statement = _UPDATE_IF_CURRENT if expected_revision else _UPSERT
    row = (
        await conn.execute(
            statement,
            {
                "account_id": account_id,
                "user_id": str(user_id),
                "key": key,
                "entry": entry,
                "expected": expected_revision,
            },
        )
    ).first()
    return None if row is None else _entry(row.entry)


# --- prompts -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredPrompt:
    """The active prompt of a slug as the account sees it; ``account_id`` None
    is the global default."""

    slug: str
    purpose: str
    text: str
    version: int
    account_id: uuid.UUID | None
    create_time: datetime


# Under RLS the transaction sees its account's rows and the global defaults:
# the account's active row wins over the default.
_ACTIVE_PROMPTS = """
    SELECT DISTINCT ON (p.slug) p.slug, p.purpose, p.text, p.version, p.account_id, p.create_time
    FROM settings.prompts p
    WHERE p.active {where}
    ORDER BY p.slug, p.account_id NULLS LAST
"""


def _prompt(row: Any) -> StoredPrompt:
    return StoredPrompt(
        slug=row.slug,
        purpose=row.purpose,
        text=row.text,
        version=int(row.version),
        account_id=row.account_id,
        create_time=row.create_time,
    )


async def active_prompts(conn: AsyncConnection) -> list[StoredPrompt]:
    """Every prompt as the transaction's account sees it, ordered by slug."""
    rows = await conn.execute(text(_ACTIVE_PROMPTS.format(where="")))
    return [_prompt(row) for row in rows]


async def active_prompt(conn: AsyncConnection, slug: str) -> StoredPrompt | None:
    row = (
        await conn.execute(text(_ACTIVE_PROMPTS.format(where="AND p.slug = :slug")), {"slug": slug})
    ).first()
    return None if row is None else _prompt(row)


async def lock_prompt(conn: AsyncConnection, *, account_id: uuid.UUID, slug: str) -> None:
    """Serializes the writes of one account's prompt until the transaction
    ends (there may be no row yet to lock: the account never overrode it)."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"settings.prompts/{account_id}/{slug}"},
    )


async def deactivate_override(conn: AsyncConnection, *, account_id: uuid.UUID, slug: str) -> None:
    await conn.execute(
        text(
            "UPDATE settings.prompts SET active = false "
            "WHERE account_id = :account_id AND slug = :slug AND active"
        ),
        {"account_id": account_id, "slug": slug},
    )


async def insert_override(
    conn: AsyncConnection, *, account_id: uuid.UUID, user_id: uuid.UUID, slug: str, purpose: str, body: str
) -> StoredPrompt:
    """The account's new active version of ``slug``: one more than every
    version the account can see of it (its own history and the defaults), so
    a version never names two texts for one account."""
    row = (
        await conn.execute(
            text(
                """
                INSERT INTO settings.prompts (account_id, slug, purpose, text, version, active, created_by)
                SELECT :account_id, :slug, :purpose, :body, max(p.version) + 1, true, :user_id
                FROM settings.prompts p WHERE p.slug = :slug
                RETURNING slug, purpose, text, version, account_id, create_time
                """
            ),
            {"account_id": account_id, "user_id": user_id, "slug": slug, "purpose": purpose, "body": body},
        )
    ).one()
    return _prompt(row)
