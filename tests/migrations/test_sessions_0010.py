"""sessions_0010 on data: sessions made before it are their creators' (only
escalations wait in the team queue), and one walk opens one session."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.__main__ import migrate
from migrations.roles import RoleNames

INSERT = """INSERT INTO sessions.ai_sessions
    (account_id, id, ticket_ref, ticket_kind, title, created_by, created_by_name, escalated_walk_id)
    VALUES (:account, :id, 'CW #1', 'psa', 't', :user, :name, :walk)"""


async def test_sessions_before_it_become_their_creators(scratch: tuple[str, RoleNames]) -> None:
    url, roles = scratch
    await migrate(url, roles, schemas=["sessions"])
    await migrate(url, roles, schemas=["sessions"], downgrade_to="sessions_0009")
    account, user = uuid.uuid4(), uuid.uuid4()
    own, escalated = uuid.uuid4(), uuid.uuid4()
    walk = uuid.uuid4()
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for session_id, name, walk_id in ((own, "Lee", None), (escalated, None, walk)):
                await conn.execute(
                    text(INSERT),
                    {"account": account, "id": session_id, "user": user, "name": name, "walk": walk_id},
                )
        await migrate(url, roles, schemas=["sessions"])
        async with engine.connect() as conn:
            rows = {
                row.id: (row.assignee, row.assignee_name)
                for row in await conn.execute(
                    text("SELECT id, assignee, assignee_name FROM sessions.ai_sessions")
                )
            }
        assert rows == {own: (user, "Lee"), escalated: (None, None)}
        with pytest.raises(IntegrityError, match="ai_sessions_escalated_walk_key"):
            async with engine.begin() as conn:
                await conn.execute(
                    text(INSERT),
                    {"account": account, "id": uuid.uuid4(), "user": user, "name": None, "walk": walk},
                )
        async with engine.begin() as conn:  # another account's session may name the same id
            await conn.execute(
                text(INSERT),
                {"account": uuid.uuid4(), "id": uuid.uuid4(), "user": user, "name": None, "walk": walk},
            )
    finally:
        await engine.dispose()


async def test_notes_posted_before_revisions_become_revision_one(scratch: tuple[str, RoleNames]) -> None:
    """sessions_0009's own backfill ran under forced RLS and saw no row."""
    url, roles = scratch
    await migrate(url, roles, schemas=["sessions"])
    await migrate(url, roles, schemas=["sessions"], downgrade_to="sessions_0008")
    session, user = uuid.uuid4(), uuid.uuid4()
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    """INSERT INTO sessions.ai_sessions (account_id, id, ticket_ref, ticket_kind, title, created_by,
                           resolution_note_markdown, resolution_note_post_time, resolution_note_external_id,
                           resolution_note_state_version)
                       VALUES (gen_random_uuid(), :id, 'CW #1', 'psa', 't', :user, 'The note', now(), 'CW-1', 2)"""
                ),
                {"id": session, "user": user},
            )
        await migrate(url, roles, schemas=["sessions"])
        async with engine.connect() as conn:
            revisions = (
                await conn.execute(
                    text(
                        "SELECT kind, revision, text, external_id, state_version, posted_by FROM sessions.note_revisions"
                    )
                )
            ).all()
            latest = (
                await conn.execute(
                    text(
                        "SELECT resolution_note_revision, escalation_package_revision FROM sessions.ai_sessions"
                    )
                )
            ).one()
        assert [tuple(r) for r in revisions] == [("resolution_note", 1, "The note", "CW-1", 2, user)]
        assert tuple(latest) == (1, None)
    finally:
        await engine.dispose()
