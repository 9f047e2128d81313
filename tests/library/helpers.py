"""A small library client for the tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
from flowpilot.library.v1 import library_pb2 as pb
from flowpilot.library.v1 import library_pb2_grpc
from sqlalchemy import Row, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.auth import Role, ServiceCredential
from services.library.tables import draft_templates
from tests.support import Keys, RunDatabase


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

    async def draft(self, body: str = "Get-Service spooler", **kwargs: Any) -> pb.DraftTemplate:
        """A draft made by hand (``provenance``, if given, is sent as a claim)."""
        message = pb.DraftTemplate(
            script_body=body,
            language=pb.LANGUAGE_POWERSHELL,
            suggested_name=kwargs.pop("suggested_name", ""),
            provenance=kwargs.pop("provenance", None),
        )
        return await self.call(
            "CreateDraftTemplate", pb.CreateDraftTemplateRequest(draft_template=message, **kwargs)
        )

    async def import_scripts(
        self, caller: ServiceCredential | str, request: pb.ImportSessionScriptsRequest
    ) -> pb.ImportSessionScriptsResponse:
        """``ImportSessionScripts`` as a service: ``caller``'s token for this
        account, or the token given."""
        token = caller if isinstance(caller, str) else caller.token_for(self.account)
        stub = library_pb2_grpc.LibraryServiceStub(self.channel)
        return await stub.ImportSessionScripts(request, metadata=(("authorization", f"Bearer {token}"),))


def session_scripts(
    session: uuid.UUID, *items: str, resolved_by: uuid.UUID, ticket_ref: str = "CW #100"
) -> pb.ImportSessionScriptsRequest:
    """What the sessions service sends for a resolved session: one script per lane item."""
    return pb.ImportSessionScriptsRequest(
        session=f"sessions/{session}",
        resolved_by=str(resolved_by),
        ticket_ref=ticket_ref,
        scripts=[
            pb.SessionScript(
                lane_item=f"sessions/{session}/laneItems/{item}",
                script_body=f"Get-Service {item}",
                language=pb.LANGUAGE_POWERSHELL,
                title=f"Script {item}",
            )
            for item in items
        ],
    )


async def draft_rows(database: RunDatabase, account: uuid.UUID) -> list[Row[Any]]:
    """The account's draft rows as stored, oldest first (read as the library's login, under RLS)."""
    engine = create_async_engine(database.runtime_url("library"))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_account_id', :a, true)"), {"a": str(account)}
            )
            query = select(draft_templates).order_by(draft_templates.c.create_time, draft_templates.c.id)
            return list((await conn.execute(query)).all())
    finally:
        await engine.dispose()
