"""What the sessions service's gRPC surfaces share: the context type, paging
by time, and the caller's account."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeAlias

import grpc

from services.core import pagination
from services.core.auth import current_principal
from services.sessions.rows import Fact, Fix, Message, Session

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

# A FULL page reads whole lanes (up to 8 MiB each): at most this many of them.
FULL_PAGE_SIZE = 10


def by_create_time(row: Session | Fact | Fix | Message) -> str:
    return row.create_time.isoformat()


def paging(request: pagination.ListRequest, query: dict[str, object]) -> pagination.Paging[datetime]:
    """Paging by time (then id), for the caller's account."""
    return pagination.paging(request, current_principal().account_id, query, first=datetime.fromisoformat)


def account() -> uuid.UUID:
    """The caller's account: every domain call names it."""
    return current_principal().account_id
