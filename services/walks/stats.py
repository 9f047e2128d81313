"""Flow statistics for team leads: how each version's walks went and where
they ended, from the walks themselves and the node passes counted as they
stepped. Read in one transaction; nothing is cached."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.core.db import Database
from services.walks import flows, stats_storage
from services.walks.stats_storage import Ended, VersionCounts


@dataclass(frozen=True, slots=True)
class NodeCounts:
    version: int
    node: str
    passed: int
    resolved_here: int
    escalated_here: int
    abandoned_here: int


def node_counts(passes: dict[tuple[int, str], int], ended: list[Ended]) -> list[NodeCounts]:
    """Every (version, node) stepped from or ended at: newest version first,
    then by node id."""
    by_node = {(e.version, e.node): e for e in ended}
    keys = sorted(set(passes) | set(by_node), key=lambda key: (-key[0], key[1]))
    counts = []
    for version, node in keys:
        end = by_node.get((version, node))
        counts.append(
            NodeCounts(
                version=version,
                node=node,
                passed=passes.get((version, node), 0),
                resolved_here=end.resolved if end else 0,
                escalated_here=end.escalated if end else 0,
                abandoned_here=end.abandoned if end else 0,
            )
        )
    return counts


# The newest versions a reading covers (each up to 500 nodes): the answer
# stays far below the message limit however often a flow was republished.
MAX_VERSIONS = 20


class FlowStatistics:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(
        self, account: uuid.UUID, flow_id: uuid.UUID, name: str
    ) -> tuple[list[VersionCounts], list[NodeCounts]]:
        async with self._db.transaction(account) as conn:
            await flows.flow(conn, flow_id, name)  # NOT_FOUND for another account's flow too
            versions = await stats_storage.version_counts(conn, flow_id, limit=MAX_VERSIONS)
            if not versions:
                return [], []
            since = versions[-1].version
            ended = await stats_storage.ended_at(conn, flow_id, since_version=since)
            passes = await stats_storage.passes(conn, flow_id, since_version=since)
        return versions, node_counts(passes, ended)
