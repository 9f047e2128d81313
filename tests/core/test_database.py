"""The database runtime's failure modes, against real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.config import to_asyncpg_url
from services.core.db import Database
from services.core.errors import Unavailable
from tests.support import RunDatabase


async def test_a_full_server_is_unavailable_not_an_internal_error(database: RunDatabase) -> None:
    # A login refused for lack of connection slots (SQLSTATE 53300, the same
    # code as max_connections exhausted) means "retry later" on both paths.
    role = f"fp_full_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(to_asyncpg_url(database.admin_url), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0'))
    url = make_url(to_asyncpg_url(database.admin_url)).set(username=role, password=None)
    db = Database.connect(url.render_as_string(hide_password=False), pool_size=1)
    try:
        with pytest.raises(Unavailable):
            async with db.transaction(uuid.uuid4()):
                pass
        with pytest.raises(Unavailable):
            async with db.direct(uuid.uuid4()):
                pass
    finally:
        await db.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP ROLE "{role}"'))
        await admin.dispose()
