"""Every schema migrates up, down to base and up again; models match migrations."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.__main__ import migrate, migrated_schemas
from migrations.roles import RoleNames


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


async def _tenant_reads(url: str) -> dict[str, tuple[list[str] | None, bool]]:
    """Each tenant read: its fixed settings, and whether it refuses a NULL tenant."""
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                """
                SELECT p.oid::regprocedure::text AS signature, p.proconfig AS config,
                       p.prosrc LIKE '%p_tenant IS NULL%' AS refuses_null
                FROM pg_proc p WHERE p.pronamespace IN ('sessions'::regnamespace, 'settings'::regnamespace)
                  AND p.proargnames[1] = 'p_tenant'
                """
            )
        )
        reads = {row.signature: (row.config, row.refuses_null) for row in rows}
    await engine.dispose()
    return reads


async def test_tenant_reads_go_back_to_what_their_first_migration_created(
    scratch: tuple[str, RoleNames],
) -> None:
    """The tenant reads were replaced by a later migration (sessions_0004,
    settings_0003); a downgrade gives back exactly the form before, so a
    database's functions follow its revision and nothing else."""
    url, roles = scratch
    await migrate(url, roles, schemas=["sessions", "settings"])
    head = await _tenant_reads(url)
    assert len(head) == 3
    assert all(v == (["search_path=pg_catalog, pg_temp"], True) for v in head.values()), head
    await migrate(url, roles, schemas=["sessions"], downgrade_to="sessions_0003")
    await migrate(url, roles, schemas=["settings"], downgrade_to="settings_0002")
    before = await _tenant_reads(url)
    assert before.keys() == head.keys()
    assert all(v == (None, False) for v in before.values()), before
    await migrate(url, roles, schemas=["sessions", "settings"])
    assert await _tenant_reads(url) == head
