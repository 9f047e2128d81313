"""Fixtures of the migration tests: a throwaway database with roles of its own."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.roles import RoleNames, drop_roles
from services.core.config import to_asyncpg_url
from tests.support import admin_server_url


@pytest.fixture
async def scratch() -> AsyncIterator[tuple[str, RoleNames]]:
    """An empty database and role names, apart from the run's database (for
    round trips and for changing what the run's roles would keep)."""
    server_url = to_asyncpg_url(admin_server_url())
    suffix = secrets.token_hex(4)
    name, roles = f"flowpilot_mig_{suffix}", RoleNames(f"fpm{suffix}")
    server = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    async with server.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False), roles
    finally:
        async with server.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await drop_roles(conn, roles)
        await server.dispose()
