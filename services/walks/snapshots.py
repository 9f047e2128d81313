"""Walks' tree snapshots as messages, converted once per process.

A snapshot never changes once its walk starts, so each is read and
converted on first use, not on every step (up to 500 nodes). Keyed by
account and walk; read under the caller's tenant like any other read."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from cachetools import LRUCache
from flowpilot.walks.v1 import walks_pb2 as pb

from services.core.auth import current_principal
from services.core.db import Database
from services.walks import storage, trees
from services.walks.storage import Tree, WalkRow

CACHED = 256  # converted snapshots kept per process


class Snapshots:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._trees: LRUCache[tuple[uuid.UUID, uuid.UUID], pb.Tree] = LRUCache(CACHED)

    def remember(self, account: uuid.UUID, walk_id: uuid.UUID, tree: Tree) -> None:
        """A new walk's snapshot, converted now (its start had it in hand)."""
        message = trees.to_proto(tree)
        if message is not None:
            self._trees[(account, walk_id)] = message

    async def trees(self, account: uuid.UUID, rows: Sequence[WalkRow]) -> list[pb.Tree | None]:
        """Each walk's snapshot (None for an ad-hoc walk)."""
        account = current_principal().account_id
        found = {r.id: self._trees.get((account, r.id)) for r in rows if r.has_tree}
        missing = [walk_id for walk_id, tree in found.items() if tree is None]
        if missing:
            async with self._db.transaction(account) as conn:
                read = await storage.walk_trees(conn, missing)
            for walk_id, tree in read.items():
                message = trees.to_proto(tree)
                if message is not None:
                    found[walk_id] = self._trees[(account, walk_id)] = message
        return [found.get(r.id) for r in rows]
