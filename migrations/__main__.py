"""``python -m migrations``: bootstrap roles and schemas, then migrate every schema.

Connects with an administrator URL (``FLOWPILOT_ADMIN_DATABASE_URL`` or
``--database-url``). ``--downgrade-to base`` unwinds instead (tests, rollback).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.roles import RoleNames, Timeouts, bootstrap
from services.core.config import to_asyncpg_url

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ROOT / "migrations" / "versions"


def migrated_schemas() -> list[str]:
    """Schemas that have a migration history (services that exist)."""
    return sorted(p.name for p in VERSIONS.iterdir() if p.is_dir() and any(p.glob("*.py")))


def alembic_config(schema: str, roles: RoleNames) -> Config:
    config = Config(str(ROOT / "alembic.ini"), ini_section=schema)
    config.attributes["role_prefix"] = roles.prefix
    return config


async def migrate(
    admin_url: str,
    roles: RoleNames,
    *,
    runtime_password: str | None = None,
    timeouts: Timeouts = Timeouts(),  # noqa: B008 (immutable)
    downgrade_to: str | None = None,
    schemas: list[str] | None = None,
) -> None:
    engine = create_async_engine(to_asyncpg_url(admin_url))
    try:
        async with engine.begin() as conn:
            await bootstrap(conn, roles, runtime_password=runtime_password, timeouts=timeouts)
        for schema in schemas or migrated_schemas():
            config = alembic_config(schema, roles)

            def run(sync_conn: Connection, config: Config = config) -> None:
                config.attributes["connection"] = sync_conn
                if downgrade_to is None:
                    command.upgrade(config, "head")
                else:
                    command.downgrade(config, downgrade_to)

            async with engine.begin() as conn:
                await conn.run_sync(run)
    finally:
        await engine.dispose()


def timeouts_from_environment() -> Timeouts:
    default = Timeouts()
    return Timeouts(
        statement_ms=int(os.environ.get("FLOWPILOT_DB_STATEMENT_TIMEOUT_MS", default.statement_ms)),
        lock_ms=int(os.environ.get("FLOWPILOT_DB_LOCK_TIMEOUT_MS", default.lock_ms)),
        idle_in_transaction_ms=int(
            os.environ.get("FLOWPILOT_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", default.idle_in_transaction_ms)
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get("FLOWPILOT_ADMIN_DATABASE_URL"))
    parser.add_argument("--role-prefix", default=os.environ.get("FLOWPILOT_DB_ROLE_PREFIX", "flowpilot"))
    parser.add_argument("--downgrade-to", default=None)
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url or FLOWPILOT_ADMIN_DATABASE_URL is required")
    asyncio.run(
        migrate(
            args.database_url,
            RoleNames(args.role_prefix),
            runtime_password=os.environ.get("FLOWPILOT_DB_RUNTIME_PASSWORD"),
            timeouts=timeouts_from_environment(),
            downgrade_to=args.downgrade_to,
        )
    )


if __name__ == "__main__":
    main()
