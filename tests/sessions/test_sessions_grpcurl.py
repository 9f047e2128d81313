"""grpcurl against the sessions service: reflection and a call with a token."""

from __future__ import annotations

import json
import uuid

from services.core.auth import Role
from tests.grpcurl import grpcurl
from tests.support import Keys

SERVICE = "flowpilot.sessions.v1.SessionsService"


async def test_list_describe_and_call(sessions_address: str, keys: Keys, account: uuid.UUID) -> None:
    listed = await grpcurl("-plaintext", sessions_address, "list", SERVICE)
    assert listed.code == 0, listed.err
    assert f"{SERVICE}.SuggestFix" in listed.out and f"{SERVICE}.PreviewResolutionNote" in listed.out
    described = await grpcurl("-plaintext", sessions_address, "describe", "flowpilot.sessions.v1.Fact")
    assert "google.protobuf.Timestamp delete_time" in described.out
    token = keys.token(account_id=account, role=Role.ENGINEER)
    created = await grpcurl(
        "-plaintext",
        "-H",
        f"authorization: Bearer {token}",
        "-d",
        '{"session": {"ticket_ref": "CW #48213", "ticket_kind": "TICKET_KIND_PSA", "title": "VPN drops"}}',
        sessions_address,
        f"{SERVICE}/CreateSession",
    )
    assert created.code == 0, created.err
    name = json.loads(created.out)["session"]["name"]
    fact = await grpcurl(
        "-plaintext",
        "-H",
        f"authorization: Bearer {token}",
        "-d",
        json.dumps(
            {"parent": name, "fact": {"text": "Drops every 10 minutes", "source": "FACT_SOURCE_USER"}}
        ),
        sessions_address,
        f"{SERVICE}/CreateFact",
    )
    assert fact.code == 0, fact.err
    got = await grpcurl(
        "-plaintext",
        "-H",
        f"authorization: Bearer {token}",
        "-d",
        json.dumps({"name": name}),
        sessions_address,
        f"{SERVICE}/GetSession",
    )
    assert got.code == 0, got.err
    assert json.loads(got.out)["state_version"] == "1"  # int64 is a JSON string
