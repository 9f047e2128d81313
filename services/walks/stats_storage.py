"""The SQL of flow statistics: node passes counted as walks step, and a
flow's walks counted by version and by the node they ended at."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import FunctionFilter

from services.walks.tables import flow_node_passes, l1_walk_sessions

N, W = flow_node_passes, l1_walk_sessions


@dataclass(frozen=True, slots=True)
class VersionCounts:
    version: int
    started: int
    resolved: int
    escalated: int
    abandoned: int
    active: int
    median_to_resolve: timedelta | None


@dataclass(frozen=True, slots=True)
class Ended:
    """Walks of one version that ended at one node, by how they ended."""

    version: int
    node: str
    resolved: int
    escalated: int
    abandoned: int


async def count_pass(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    flow_id: uuid.UUID,
    version: int,
    node: str,
    delta: int,
) -> None:
    """One step more (``delta`` 1) or less (-1, a step back) from ``node``."""
    statement = insert(N).values(
        account_id=account_id, flow_id=flow_id, flow_version=version, node_id=node, passes=max(delta, 0)
    )
    await conn.execute(
        statement.on_conflict_do_update(
            constraint="flow_node_passes_pkey",
            set_={N.c.passes: func.greatest(N.c.passes + delta, 0)},
        )
    )


def _of(status: str) -> FunctionFilter[int]:
    return func.count().filter(W.c.status == status)


async def version_counts(conn: AsyncConnection, flow_id: uuid.UUID, *, limit: int) -> list[VersionCounts]:
    """Per version, the newest ``limit`` first (one index scan of the flow's walks)."""
    seconds = func.extract("epoch", W.c.end_time - W.c.start_time)
    median = func.percentile_cont(0.5).within_group(seconds).filter(W.c.status == "resolved").label("median")
    query = (
        select(
            W.c.flow_version,
            func.count().label("started"),
            _of("resolved").label("resolved"),
            _of("escalated").label("escalated"),
            _of("abandoned").label("abandoned"),
            _of("active").label("active"),
            median,
        )
        .where(W.c.flow_id == flow_id, W.c.flow_version.is_not(None))
        .group_by(W.c.flow_version)
        .order_by(W.c.flow_version.desc())
        .limit(limit)
    )
    return [
        VersionCounts(
            version=row.flow_version,
            started=row.started,
            resolved=row.resolved,
            escalated=row.escalated,
            abandoned=row.abandoned,
            active=row.active,
            median_to_resolve=None if row.median is None else timedelta(seconds=float(row.median)),
        )
        for row in (await conn.execute(query)).all()
    ]


async def ended_at(conn: AsyncConnection, flow_id: uuid.UUID, *, since_version: int) -> list[Ended]:
    """Walks of versions from ``since_version`` on that ended, by version and
    the node they ended at."""
    query = (
        select(
            W.c.flow_version,
            W.c.current_node_id,
            _of("resolved").label("resolved"),
            _of("escalated").label("escalated"),
            _of("abandoned").label("abandoned"),
        )
        .where(
            W.c.flow_id == flow_id,
            W.c.flow_version >= since_version,
            W.c.current_node_id.is_not(None),
            W.c.status != "active",
        )
        .group_by(W.c.flow_version, W.c.current_node_id)
    )
    return [
        Ended(row.flow_version, row.current_node_id, row.resolved, row.escalated, row.abandoned)
        for row in (await conn.execute(query)).all()
    ]


async def passes(
    conn: AsyncConnection, flow_id: uuid.UUID, *, since_version: int
) -> dict[tuple[int, str], int]:
    """Steps taken from each node of versions from ``since_version`` on, by (version, node)."""
    query = select(N.c.flow_version, N.c.node_id, N.c.passes).where(
        N.c.flow_id == flow_id, N.c.flow_version >= since_version
    )
    return {(row.flow_version, row.node_id): row.passes for row in (await conn.execute(query)).all()}


__all__ = ["Ended", "VersionCounts", "count_pass", "ended_at", "passes", "version_counts"]
