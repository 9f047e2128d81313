"""A small walks client and sample trees for the tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
from flowpilot.api.v1 import tickets_pb2
from flowpilot.walks.v1 import walks_pb2 as pb
from flowpilot.walks.v1 import walks_pb2_grpc

from services.core.auth import Role
from tests.support import Keys

Q, R, E = pb.NODE_KIND_QUESTION, pb.NODE_KIND_RESOLUTION, pb.NODE_KIND_ESCALATION


def printer_tree(extra: str = "") -> pb.Tree:
    return pb.Tree(
        root="q1",
        nodes=[
            pb.Node(
                id="q1",
                kind=Q,
                text=f"Is the spooler running?{extra}",
                options=[pb.Option(label="Yes", next="q2"), pb.Option(label="No", next="r1")],
            ),
            pb.Node(id="r1", kind=R, text="Start the spooler"),
            pb.Node(
                id="q2",
                kind=Q,
                text="Do other users print?",
                options=[pb.Option(label="Yes", next="r2"), pb.Option(label="No", next="e1")],
            ),
            pb.Node(id="r2", kind=R, text="Reinstall the user's driver"),
            pb.Node(id="e1", kind=E, text="Escalate: printer down for everyone"),
        ],
    )


@dataclass
class Tech:
    channel: grpc.aio.Channel
    keys: Keys
    account: uuid.UUID = field(default_factory=uuid.uuid4)
    user: uuid.UUID = field(default_factory=uuid.uuid4)
    role: Role = Role.TEAM_ADMIN
    name: str | None = None  # the token's display name claim

    def as_role(self, role: Role) -> Tech:
        return Tech(self.channel, self.keys, self.account, self.user, role, self.name)

    def named(self, name: str) -> Tech:
        return Tech(self.channel, self.keys, self.account, self.user, self.role, name)

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return self.keys.metadata(account_id=self.account, user_id=self.user, role=self.role, name=self.name)

    def call(self, method: str, request: Any) -> Any:
        return getattr(walks_pb2_grpc.WalksServiceStub(self.channel), method)(request, metadata=self.md)

    async def flow(
        self, tree: pb.Tree | None = None, *, publish: bool = True, name: str = "Printer"
    ) -> pb.Flow:
        flow = await self.call(
            "CreateFlow", pb.CreateFlowRequest(flow=pb.Flow(display_name=name, tree=tree or printer_tree()))
        )
        if publish:
            flow = await self.call("PublishFlow", pb.PublishFlowRequest(name=flow.name))
        return flow

    async def start(self, ticket: str | None = None, **kwargs: Any) -> pb.StartWalkResponse:
        kwargs.setdefault("ticket_kind", tickets_pb2.TICKET_KIND_PSA)
        return await self.call(
            "StartWalk", pb.StartWalkRequest(ticket_ref=ticket or f"T-{uuid.uuid4().hex[:8]}", **kwargs)
        )

    async def advance(self, walk: pb.Walk, choice: str) -> pb.Walk:
        return await self.call("AdvanceWalk", pb.AdvanceWalkRequest(name=walk.name, choice=choice))
