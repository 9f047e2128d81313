"""Every schema migrates up, down to base and up again; models match migrations."""

from __future__ import annotations

import importlib
import secrets
from collections.abc import AsyncIterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.__main__ import migrate, migrated_schemas
from migrations.roles import RoleNames, drop_roles
from services.core.config import to_asyncpg_url
from tests.support import admin_server_url


@pytest.fixture
async def scratch() -> AsyncIterator[tuple[str, RoleNames]]:
    """A throwaway database for round trips, apart from the run's database."""
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


async def _tables(url: str, schema: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :s AND tablename <> 'alembic_version'"),
            {"s": schema},
        )
        names = set(rows.scalars())
    await engine.dispose()
    return names


async def test_upgrade_downgrade_upgrade(scratch: tuple[str, RoleNames]) -> None:
    url, roles = scratch
    schemas = migrated_schemas()
    assert "settings" in schemas
    await migrate(url, roles)
    for schema in schemas:
        assert await _tables(url, schema), f"{schema} has no tables after upgrade"
    await migrate(url, roles, downgrade_to="base")
    for schema in schemas:
        assert await _tables(url, schema) == set(), f"{schema} keeps tables after downgrade"
    await migrate(url, roles)
    for schema in schemas:
        assert await _tables(url, schema)


@pytest.mark.parametrize("schema", migrated_schemas())
async def test_models_and_migrations_agree(scratch: tuple[str, RoleNames], schema: str) -> None:
    url, roles = scratch
    await migrate(url, roles, schemas=[schema])
    metadata = importlib.import_module(f"services.{schema}.tables").metadata

    def diff(conn: Connection) -> list[object]:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, _: name == schema if type_ == "schema" else True,
                "compare_server_default": True,
                "version_table_schema": schema,
            },
        )
        return list(compare_metadata(context, metadata))

    engine = create_async_engine(url)
    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    await engine.dispose()
    assert differences == []
