"""The flow catalogue: categories (a small tree per account), tags, and how
flows are found (search, filters, order).

Categories are at most :data:`MAX_DEPTH` levels deep, their names unique
among siblings (case-insensitively), and only an empty one (no
subcategories, no flows) can be deleted. Tags are trimmed, lower-cased and
kept once each, at most :data:`MAX_TAGS` of :data:`MAX_TAG` characters.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from services.core.db import Database
from services.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    found,
)
from services.walks import storage
from services.walks.storage import CategoryNameTaken, CategoryRow, Connection
from services.walks.tables import MAX_CATEGORY_DEPTH

MAX_DEPTH = MAX_CATEGORY_DEPTH
MAX_TAGS = 20
MAX_TAG = 40
ORDERS = ("name", "relevance", "recency", "usage")


@dataclass(frozen=True, slots=True)
class CategoryRef:
    """A category a request names: ``id`` None means none (clear it)."""

    id: uuid.UUID | None
    name: str


def check_tags(tags: Sequence[str], *, field: str) -> list[str]:
    """Tags trimmed, lower-cased and without repeats; INVALID_ARGUMENT naming
    each one that is blank or too long, or the field when there are too many."""
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(FieldViolation(field, f"must have at most {MAX_TAGS} tags"))
    cleaned: list[str] = []
    violations = []
    for index, tag in enumerate(tags):
        tag = tag.strip().lower()
        if not tag or len(tag) > MAX_TAG:
            violations.append(FieldViolation(f"{field}[{index}]", f"must be 1 to {MAX_TAG} characters"))
        elif tag not in cleaned:
            cleaned.append(tag)
    if violations:
        raise InvalidArgument(violations)
    return cleaned


def check_tag_filter(tag: str) -> str | None:
    tag = tag.strip().lower()
    return tag or None


def list_order(asked: str | None, *, searching: bool) -> str:
    """The order of a listing: by name unless searching (relevance then);
    relevance needs a search."""
    if asked is None:
        return "relevance" if searching else "name"
    if asked == "relevance" and not searching:
        raise InvalidArgument(FieldViolation("order_by", "relevance needs a query"))
    return asked


def child_depth(parent: CategoryRow | None) -> int:
    """The depth of a new category under ``parent``; FAILED_PRECONDITION past the deepest level."""
    depth = 1 if parent is None else parent.depth + 1
    if depth > MAX_DEPTH:
        raise FailedPrecondition(
            f"categories are at most {MAX_DEPTH} levels deep; the parent is at level {MAX_DEPTH}",
            reason="CATEGORY_TOO_DEEP",
        )
    return depth


async def category(
    conn: Connection, category_id: uuid.UUID, name: str, *, lock: str | None = None
) -> CategoryRow:
    """The category; NOT_FOUND (naming ``name`` as given) when it is not the account's."""
    return found(await storage.get_category(conn, category_id, lock=lock), "flow category", name)


async def referable(conn: Connection, ref: CategoryRef | None) -> uuid.UUID | None:
    """The id a flow may refer to (locked against a concurrent delete), None to clear."""
    if ref is None or ref.id is None:
        return None
    return (await category(conn, ref.id, ref.name, lock="key_share")).id


class Categories:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, account: uuid.UUID, *, name: str, parent: CategoryRef | None) -> CategoryRow:
        async with self._db.transaction(account) as conn:
            above = None
            if parent is not None and parent.id is not None:
                above = await category(conn, parent.id, parent.name, lock="key_share")
            depth = child_depth(above)
            try:
                return await storage.insert_category(
                    conn,
                    account_id=account,
                    id=uuid.uuid4(),
                    parent_id=above.id if above else None,
                    name=name,
                    depth=depth,
                )
            except CategoryNameTaken:
                raise AlreadyExists(
                    f"a category named {name!r} exists there already", reason="CATEGORY_NAME_TAKEN"
                ) from None

    async def get(self, account: uuid.UUID, category_id: uuid.UUID, name: str) -> CategoryRow:
        async with self._db.transaction(account) as conn:
            return await category(conn, category_id, name)

    async def page(
        self,
        account: uuid.UUID,
        *,
        parent_id: uuid.UUID | None,
        after: tuple[str, uuid.UUID] | None,
        limit: int,
    ) -> list[CategoryRow]:
        async with self._db.transaction(account) as conn:
            return await storage.list_categories(conn, parent_id=parent_id, after=after, limit=limit)

    async def delete(self, account: uuid.UUID, category_id: uuid.UUID, name: str) -> None:
        async with self._db.transaction(account) as conn:
            row = await category(conn, category_id, name, lock="update")
            children, flows = await storage.category_in_use(conn, row.id)
            if children or flows:
                what = " and ".join(w for w, has in (("subcategories", children), ("flows", flows)) if has)
                raise FailedPrecondition(f"the category has {what}", reason="CATEGORY_NOT_EMPTY")
            await storage.delete_category(conn, row.id)
