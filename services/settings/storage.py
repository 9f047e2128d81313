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
