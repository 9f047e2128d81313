"""A small library client for the tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
from flowpilot.library.v1 import library_pb2 as pb
from flowpilot.library.v1 import library_pb2_grpc

from services.core.auth import Role
from tests.support import Keys


@dataclass
class Librarian:
    channel: grpc.aio.Channel
    keys: Keys
    account: uuid.UUID = field(default_factory=uuid.uuid4)
    user: uuid.UUID = field(default_factory=uuid.uuid4)
    role: Role = Role.TEAM_ADMIN

    def as_role(self, role: Role) -> Librarian:
        return Librarian(self.channel, self.keys, self.account, self.user, role)

    def call(self, method: str, request: Any, **kwargs: Any) -> Any:
        stub = library_pb2_grpc.LibraryServiceStub(self.channel)
        md = self.keys.metadata(account_id=self.account, user_id=self.user, role=self.role)
        return getattr(stub, method)(request, metadata=md, **kwargs)

    async def template(
        self, display_name: str = "Restart spooler", body: str = "Restart-Service {{service}}", **fields: Any
    ) -> pb.ScriptTemplate:
        params = fields.pop(
            "parameters", [pb.Parameter(name="service", required=True)] if "{{service}}" in body else []
        )
        message = pb.ScriptTemplate(
            display_name=display_name,
            body=body,
            language=fields.pop("language", pb.LANGUAGE_POWERSHELL),
            parameters=params,
            **fields,
        )
        return await self.call(
            "CreateScriptTemplate", pb.CreateScriptTemplateRequest(script_template=message)
        )

    async def draft(
        self,
        body: str = "Get-Service spooler",
        *,
        session: uuid.UUID | None = None,
        item: str | None = None,
        **kwargs: Any,
    ) -> pb.DraftTemplate:
        provenance = pb.Provenance()
        if session is not None:
            provenance.lane_item = f"sessions/{session}/laneItems/{item or uuid.uuid4().hex}"
            provenance.ticket_ref = "CW #100"
            provenance.user = str(self.user)
        message = pb.DraftTemplate(
            script_body=body,
            language=pb.LANGUAGE_POWERSHELL,
            suggested_name=kwargs.pop("suggested_name", ""),
            provenance=provenance,
        )
        return await self.call(
            "CreateDraftTemplate", pb.CreateDraftTemplateRequest(draft_template=message, **kwargs)
        )
