"""Alembic environment shared by every service schema.

The ini section names the schema (``alembic -n settings``); its tables come
from ``services.<schema>.tables``. Migrations connect as an administrator and
``SET ROLE`` to the owner role, so every object is owned by the owner.
"""

from __future__ import annotations

import asyncio
import importlib
import os

from alembic import context
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.roles import RoleNames
from services.core.config import to_asyncpg_url

config = context.config
schema = config.config_ini_section
x_args = context.get_x_argument(as_dictionary=True)
roles = RoleNames(config.attributes.get("role_prefix") or x_args.get("role_prefix") or "flowpilot")
metadata: MetaData = importlib.import_module(f"services.{schema}.tables").metadata


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    return name == schema if type_ == "schema" else True


def _run(connection: Connection) -> None:
    connection.execute(text(f'SET ROLE "{roles.owner}"'))
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=schema,
        include_schemas=True,
        include_name=_include_name,
        compare_server_default=True,
        flowpilot_runtime_role=roles.runtime(schema),
        flowpilot_owner_role=roles.owner,
        flowpilot_maintenance_role=roles.maintenance,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    url = x_args.get("database_url") or os.environ["FLOWPILOT_ADMIN_DATABASE_URL"]
    engine = create_async_engine(to_asyncpg_url(url))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_main())
