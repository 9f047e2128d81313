"""A small client for the sessions tests: one account, one user, one role."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from flowpilot.api.v1 import tickets_pb2
from flowpilot.sessions.v1 import sessions_pb2 as pb
from flowpilot.sessions.v1 import sessions_pb2_grpc
from google.protobuf import field_mask_pb2

from services.core.ai import AI
from services.core.auth import Role
from services.sessions.service import SessionsConfig
from services.sessions.service import build as build_sessions
from tests.conftest import service_config_kwargs
from tests.support import Keys, RunDatabase, running


@dataclass
class Caller:
    channel: grpc.aio.Channel
    keys: Keys
    account: uuid.UUID = field(default_factory=uuid.uuid4)
    user: uuid.UUID = field(default_factory=uuid.uuid4)
    role: Role = Role.ENGINEER
    name: str | None = None  # the token's display name claim

    @property
    def stub(self) -> Any:
        return sessions_pb2_grpc.SessionsServiceStub(self.channel)

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return self.keys.metadata(account_id=self.account, user_id=self.user, role=self.role, name=self.name)

    def as_role(self, role: Role) -> Caller:
        return Caller(self.channel, self.keys, self.account, self.user, role, self.name)

    def other_user(self, name: str | None = None) -> Caller:
        return Caller(self.channel, self.keys, self.account, uuid.uuid4(), self.role, name)

    def named(self, name: str) -> Caller:
        """The same person, with a display name in the token."""
        return Caller(self.channel, self.keys, self.account, self.user, self.role, name)

    def call(self, method: str, request: Any) -> Any:
        return getattr(self.stub, method)(request, metadata=self.md)

    async def session(self, ticket: str | None = None, **kwargs: Any) -> pb.Session:
        ticket = ticket or f"CW #{uuid.uuid4().int % 10**6}"
        given = pb.Session(
            ticket_ref=ticket,
            ticket_kind=kwargs.pop("kind", tickets_pb2.TICKET_KIND_PSA),
            title=kwargs.pop("title", "Outlook keeps asking for a password"),
            problem=kwargs.pop("problem", "User reports Outlook prompting for credentials since Monday."),
        )
        response = await self.call("CreateSession", pb.CreateSessionRequest(session=given, **kwargs))
        return response.session

    async def lane_item(self, session: pb.Session, **fields: Any) -> pb.LaneItem:
        item = pb.LaneItem(
            kind=fields.pop("kind", pb.LANE_ITEM_KIND_CHECK), title=fields.pop("title", "Check"), **fields
        )
        return await self.call(
            "CreateLaneItem", pb.CreateLaneItemRequest(parent=session.name, lane_item=item)
        )

    async def fact(self, session: pb.Session, text: str = "MFA is enabled", **fields: Any) -> pb.Fact:
        fact = pb.Fact(text=text, source=fields.pop("source", pb.FACT_SOURCE_USER), **fields)
        return await self.call("CreateFact", pb.CreateFactRequest(parent=session.name, fact=fact))

    async def get(self, session: pb.Session) -> pb.Session:
        return await self.call("GetSession", pb.GetSessionRequest(name=session.name))


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


@asynccontextmanager
async def sessions_with(
    ai: AI,
    *,
    database: RunDatabase,
    keys: Keys,
    service_keys: dict[str, Keys],
    settings_address: str,
    library_address: str,
    **overrides: Any,
) -> AsyncIterator[str]:
    """A sessions server of its own on ``ai`` (the shared one's AI is shared by
    every test); yields its address. ``overrides``: other configuration."""
    config = SessionsConfig(
        **{
            **service_config_kwargs(database, keys, "sessions", service_keys),
            "settings_address": settings_address,
            "settings_cache_seconds": 0,
            "library_address": library_address,
            **overrides,
        }
    )
    async with running(build_sessions, config, pool_size=4, ai=ai) as server:
        yield f"127.0.0.1:{server.port}"
