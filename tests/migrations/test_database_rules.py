"""Database-wide rules that keep guarding every service as it is added."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from migrations.roles import SCHEMAS
from services.core.readpool import TenantRead
from tests.support import RunDatabase

VERSION_TABLE = "alembic_version"
# Tables whose rows without an account are global defaults every account reads
# and none writes (settings_0004). Every other tenant table: account_id NOT NULL.
SHARED_DEFAULTS = {"settings.prompts"}


@pytest.fixture
async def catalogue(database: RunDatabase) -> AsyncIterator[AsyncConnection]:
    """A superuser connection to this run's database, for reading the catalogue."""
    engine = create_async_engine(database.admin_url)
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def test_every_service_table_has_forced_rls_and_a_full_policy(
    database: RunDatabase, catalogue: AsyncConnection
) -> None:
    tables = (
        await catalogue.execute(
            text(
                """
                SELECT n.nspname AS schema, c.relname AS name,
                       c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = ANY(:schemas) AND c.relkind IN ('r', 'p')
                  AND c.relname <> :version
                """
            ),
            {"schemas": list(SCHEMAS), "version": VERSION_TABLE},
        )
    ).all()
    assert tables, "no service tables found"
    for table in tables:
        assert table.enabled and table.forced, f"{table.schema}.{table.name} lacks forced RLS"
        policies = (
            await catalogue.execute(
                text(
                    "SELECT qual, with_check, cmd FROM pg_policies WHERE schemaname = :s AND tablename = :t"
                ),
                {"s": table.schema, "t": table.name},
            )
        ).all()
        qualified = f"{table.schema}.{table.name}"
        if qualified in SHARED_DEFAULTS:
            # Besides the tenant policy, exactly one read-only policy on the
            # rows without an account (the global defaults), fail-closed.
            shared = [p for p in policies if p.cmd == "SELECT"]
            assert len(shared) == 1, f"{qualified}: {policies}"
            assert shared[0].with_check is None
            assert "account_id IS NULL" in shared[0].qual and "current_account_id()" in shared[0].qual
            policies = [p for p in policies if p.cmd != "SELECT"]
        assert len(policies) == 1, f"{table.schema}.{table.name}: {policies}"
        policy = policies[0]
        assert policy.cmd == "ALL"
        for clause in (policy.qual, policy.with_check):
            assert clause is not None
            assert "account_id" in clause and "current_account_id()" in clause and "SELECT" in clause
        # account_id is NOT NULL and leads every composite and every unique
        # index (uniqueness checks bypass RLS).
        nullable = (
            await catalogue.execute(
                text(
                    "SELECT is_nullable FROM information_schema.columns "
                    "WHERE table_schema = :s AND table_name = :t AND column_name = 'account_id'"
                ),
                {"s": table.schema, "t": table.name},
            )
        ).scalar_one()
        assert nullable == ("YES" if qualified in SHARED_DEFAULTS else "NO")
        leading = (
            await catalogue.execute(
                text(
                    """
                    SELECT i.indexrelid::regclass::text AS index, a.attname AS first
                    FROM pg_index i JOIN pg_attribute a
                      ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = CAST(:q AS regclass)
                      AND (i.indisunique OR i.indnatts > 1)
                    """
                ),
                {"q": f"{table.schema}.{table.name}"},
            )
        ).all()
        for index in leading:
            assert index.first == "account_id", f"{index.index} does not lead with account_id"


async def test_the_tenant_lookup_is_inlined_into_every_policy(
    database: RunDatabase, catalogue: AsyncConnection
) -> None:
    """A ``SET`` clause on ``tenancy.current_account_id()`` (or any change that
    keeps PostgreSQL from inlining it) would make every statement under RLS
    call it as a function: the plan would name it instead of its body."""
    tables = (
        await catalogue.execute(
            text(
                """
                SELECT n.nspname AS schema, c.relname AS name
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = ANY(:schemas) AND c.relkind = 'r' AND c.relname <> :version
                """
            ),
            {"schemas": list(SCHEMAS), "version": VERSION_TABLE},
        )
    ).all()
    assert tables
    for table in tables:
        await catalogue.execute(text(f'SET LOCAL ROLE "{database.roles.runtime(table.schema)}"'))
        plan = "\n".join(
            (await catalogue.execute(text(f'EXPLAIN VERBOSE SELECT 1 FROM "{table.schema}"."{table.name}"')))
            .scalars()
            .all()
        )
        await catalogue.rollback()
        assert "current_setting('app.current_account_id'" in plan, f"{table.schema}.{table.name}: {plan}"
        assert "current_account_id()" not in plan, f"{table.schema}.{table.name}: {plan}"


async def test_runtime_roles_are_unprivileged_and_own_nothing(
    database: RunDatabase, catalogue: AsyncConnection
) -> None:
    for schema in SCHEMAS:
        role = database.roles.runtime(schema)
        attrs = (
            await catalogue.execute(
                text(
                    "SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = :r"
                ),
                {"r": role},
            )
        ).one()
        assert not any(attrs), f"{role}: {attrs}"
        owned = (
            (
                await catalogue.execute(
                    text(
                        """
                    SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = :r
                    UNION ALL SELECT count(*) FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE r.rolname = :r
                    UNION ALL SELECT count(*) FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner WHERE r.rolname = :r
                    """
                    ),
                    {"r": role},
                )
            )
            .scalars()
            .all()
        )
        assert sum(owned) == 0, f"{role} owns objects"
        member_of_owner = (
            await catalogue.execute(
                text("SELECT pg_has_role(:r, :o, 'MEMBER')"),
                {"r": role, "o": database.roles.owner},
            )
        ).scalar_one()
        assert member_of_owner is False
        # Usage on its own schema only.
        for other in SCHEMAS:
            usage = (
                await catalogue.execute(
                    text("SELECT has_schema_privilege(:r, :s, 'USAGE')"),
                    {"r": role, "s": other},
                )
            ).scalar_one()
            assert usage is (other == schema), f"{role} usage on {other}: {usage}"
        # Nothing it could create would stand in for a name in a policy: no
        # CREATE on any schema, no temporary objects.
        creatable = (
            (
                await catalogue.execute(
                    text(
                        "SELECT nspname FROM pg_namespace WHERE has_schema_privilege(:r, oid, 'CREATE')"
                        " UNION ALL SELECT 'TEMPORARY' WHERE has_database_privilege(:r, current_database(), 'TEMP')"
                    ),
                    {"r": role},
                )
            )
            .scalars()
            .all()
        )
        assert creatable == [], f"{role} can create in {creatable}"


def _declared_tenant_reads() -> list[TenantRead]:
    for service in SCHEMAS:
        importlib.import_module(f"services.{service}.storage")
    return [r for r in TenantRead.ALL if r.function.split(".")[0] in SCHEMAS]


async def test_every_service_function_is_a_narrow_definer_or_a_tenant_read(
    database: RunDatabase, catalogue: AsyncConnection
) -> None:
    """Functions in service schemas are of two kinds only: SECURITY DEFINER
    ones owned by the maintenance role (cross-tenant, narrow), or tenant reads
    that run as the caller with the tenant as first argument. Neither is open
    to PUBLIC, and only the schema's own runtime role may call them."""
    functions = (
        await catalogue.execute(
            text(
                """
                SELECT n.nspname AS schema, p.oid::regprocedure::text AS signature,
                       p.prosecdef AS definer, pg_get_userbyid(p.proowner) AS owner,
                       l.lanname AS language, p.proargnames[1] AS first_name,
                       p.proargtypes[0]::regtype::text AS first_type,
                       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
                FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                JOIN pg_language l ON l.oid = p.prolang
                WHERE n.nspname = ANY(:schemas)
                """
            ),
            {"schemas": list(SCHEMAS)},
        )
    ).all()
    # Exactly the tenant reads the storage modules declare, with the arguments
    # they call them with (the database's spelling of each type).
    declared = {f"{r.function}({','.join(('uuid', *r.arguments))})" for r in _declared_tenant_reads()}
    assert {f.signature for f in functions if not f.definer} == declared
    for f in functions:
        assert not f.public_execute, f"{f.signature} is executable by PUBLIC"
        if f.definer:
            assert f.owner == database.roles.maintenance, f.signature
        else:
            assert (f.language, f.first_name, f.first_type) == ("plpgsql", "p_tenant", "uuid"), f
        for schema in SCHEMAS:
            allowed = (
                await catalogue.execute(
                    text("SELECT has_function_privilege(:r, CAST(:f AS regprocedure), 'EXECUTE')"),
                    {"r": database.roles.runtime(schema), "f": f.signature},
                )
            ).scalar_one()
            assert allowed is (schema == f.schema), f"{schema} runtime on {f.signature}: {allowed}"


async def test_every_tenant_read_refuses_a_null_tenant_and_keeps_the_transactions(
    database: RunDatabase, catalogue: AsyncConnection
) -> None:
    """``set_config(…, NULL)`` resets a setting: a tenant read that took a NULL
    tenant cleared the tenant of its transaction, and the next read in it
    could name any account. NULL is refused (22004) and the tenant stays."""
    reads = (
        await catalogue.execute(
            text(
                """
                SELECT n.nspname AS schema, p.proname AS name,
                       array(SELECT pg_catalog.format_type(t.oid, NULL)
                             FROM unnest(p.proargtypes) WITH ORDINALITY AS t(oid, i) ORDER BY t.i) AS types
                FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = ANY(:schemas) AND NOT p.prosecdef
                """
            ),
            {"schemas": list(SCHEMAS)},
        )
    ).all()
    assert len(reads) >= 3
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    for read in reads:
        others = "".join(f", NULL::{t}" for t in read.types[1:])
        call = f'SELECT * FROM "{read.schema}"."{read.name}"'
        await catalogue.execute(text(f'SET LOCAL ROLE "{database.roles.runtime(read.schema)}"'))
        await catalogue.execute(text("SELECT set_config('app.current_account_id', :t, true)"), {"t": mine})
        with pytest.raises(DBAPIError) as refused:
            async with catalogue.begin_nested():
                await catalogue.execute(text(f"{call}(NULL::uuid{others})"))
        assert getattr(refused.value.orig, "sqlstate", None) == "22004", (read.name, refused.value)
        tenant = (
            await catalogue.execute(text("SELECT current_setting('app.current_account_id')"))
        ).scalar_one()
        assert tenant == mine, read.name
        with pytest.raises(DBAPIError, match="cannot change the tenant") as changed:
            async with catalogue.begin_nested():
                await catalogue.execute(text(f"{call}(CAST(:t AS uuid){others})"), {"t": other})
        assert getattr(changed.value.orig, "sqlstate", None) == "42501", read.name
        await catalogue.rollback()


async def test_every_function_runs_with_a_fixed_search_path(catalogue: AsyncConnection) -> None:
    """What Supabase's splinter lints as ``function_search_path_mutable``, for
    every function of the service schemas and ``tenancy`` but one:
    ``tenancy.current_account_id()`` must stay inlinable into the policies
    (``SET`` would stop that; see the test above and docs/deviations.md)."""
    functions = (
        await catalogue.execute(
            text(
                """
                SELECT p.oid::regprocedure::text AS signature, p.proconfig AS config
                FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = ANY(:schemas)
                """
            ),
            {"schemas": [*SCHEMAS, "tenancy"]},
        )
    ).all()
    config = {f.signature: f.config for f in functions}
    assert config.pop("tenancy.current_account_id()") is None
    assert len(config) >= 5
    mutable = sorted(s for s, c in config.items() if "search_path=pg_catalog, pg_temp" not in (c or []))
    assert mutable == []


async def test_every_foreign_key_has_an_index_led_by_account_and_its_columns(
    catalogue: AsyncConnection,
) -> None:
    """A foreign key's checks (a delete or key update of the referenced row)
    look up the referring rows; without an index whose leading columns are
    the key's, each check scans the referring table, every account's rows.
    ``account_id`` leads, as in every index."""
    keys = (
        await catalogue.execute(
            text(
                """
                SELECT c.conname AS name, c.conrelid AS relid, c.conrelid::regclass::text AS tbl,
                       array(SELECT a.attname FROM unnest(c.conkey) AS k(attnum)
                             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS columns
                FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
                WHERE c.contype = 'f' AND n.nspname = ANY(:schemas)
                """
            ),
            {"schemas": list(SCHEMAS)},
        )
    ).all()
    assert len(keys) >= 5
    indexes = (
        await catalogue.execute(
            text(
                """
                SELECT i.indrelid AS relid,
                       array(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, o)
                             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                             ORDER BY k.o) AS columns
                FROM pg_index i
                WHERE i.indrelid = ANY(:relids) AND i.indpred IS NULL AND i.indisvalid
                """
            ),
            {"relids": [k.relid for k in keys]},
        )
    ).all()
    uncovered = []
    for key in keys:
        assert "account_id" in key.columns, f"{key.name} does not include account_id"
        n = len(key.columns)
        if not any(
            i.relid == key.relid and i.columns[0] == "account_id" and set(i.columns[:n]) == set(key.columns)
            for i in indexes
        ):
            uncovered.append(f"{key.tbl}.{key.name} ({', '.join(key.columns)})")
    assert uncovered == [], "foreign keys without an index led by account_id and their columns"
