"""Account B never reads, changes or references account A's sessions data, and
every attempt looks exactly like asking for something that does not exist."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from flowpilot.sessions.v1 import sessions_pb2 as pb

from services.core.auth import Role
from tests.sessions.helpers import Caller, mask
from tests.support import Keys, failure


def _swap_ids(names: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The same names with every id replaced, consistently, by a fresh one
    (missing resources), and the map of old id to new id."""
    swapped: dict[str, str] = {}

    def fresh(part: str) -> str:
        try:
            uuid.UUID(part)
        except ValueError:
            return part
        if part not in swapped:
            swapped[part] = uuid.uuid4().hex if len(part) == 32 else str(uuid.uuid4())
        return swapped[part]

    return {k: "/".join(fresh(p) for p in v.split("/")) for k, v in names.items()}, swapped


async def _error(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = failure(caught.value)
    return error.code, error.reason, error.message


@pytest.fixture
async def world(sessions_channel: grpc.aio.Channel, keys: Keys) -> dict[str, Any]:
    a, b = Caller(sessions_channel, keys), Caller(sessions_channel, keys)
    session = await a.session("CW #5150")
    item = await a.lane_item(session, title="Check DNS")
    fact = await a.fact(session, "DNS points at the old DC")
    fix = await a.call("SuggestFix", pb.SuggestFixRequest(parent=session.name))
    return {"a": a, "b": b, "session": session, "item": item, "fact": fact, "fix": fix}


CALLS: dict[str, Callable[[Caller, dict[str, str]], Awaitable[Any]]] = {
    "get session": lambda c, n: c.call("GetSession", pb.GetSessionRequest(name=n["session"])),
    "update session": lambda c, n: c.call(
        "UpdateSession",
        pb.UpdateSessionRequest(session=pb.Session(name=n["session"], title="t"), update_mask=mask("title")),
    ),
    "add lane item": lambda c, n: c.call(
        "CreateLaneItem",
        pb.CreateLaneItemRequest(
            parent=n["session"], lane_item=pb.LaneItem(kind=pb.LANE_ITEM_KIND_CHECK, title="x")
        ),
    ),
    "update lane item": lambda c, n: c.call(
        "UpdateLaneItem",
        pb.UpdateLaneItemRequest(lane_item=pb.LaneItem(name=n["item"], status=pb.LANE_ITEM_STATUS_DONE)),
    ),
    "create fact": lambda c, n: c.call(
        "CreateFact",
        pb.CreateFactRequest(parent=n["session"], fact=pb.Fact(text="x", source=pb.FACT_SOURCE_USER)),
    ),
    "get fact": lambda c, n: c.call("GetFact", pb.GetFactRequest(name=n["fact"])),
    "list facts": lambda c, n: c.call("ListFacts", pb.ListFactsRequest(parent=n["session"])),
    "update fact": lambda c, n: c.call(
        "UpdateFact", pb.UpdateFactRequest(fact=pb.Fact(name=n["fact"], text="x"))
    ),
    "delete fact": lambda c, n: c.call("DeleteFact", pb.DeleteFactRequest(name=n["fact"])),
    "undelete fact": lambda c, n: c.call("UndeleteFact", pb.UndeleteFactRequest(name=n["fact"])),
    "suggest fix": lambda c, n: c.call("SuggestFix", pb.SuggestFixRequest(parent=n["session"])),
    "active fix": lambda c, n: c.call("GetActiveFix", pb.GetActiveFixRequest(parent=n["session"])),
    "list fixes": lambda c, n: c.call("ListFixes", pb.ListFixesRequest(parent=n["session"])),
    "accept fix": lambda c, n: c.call("AcceptFix", pb.AcceptFixRequest(name=n["fix"])),
    "reject fix": lambda c, n: c.call("RejectFix", pb.RejectFixRequest(name=n["fix"])),
    "resolve": lambda c, n: c.call(
        "ResolveSession", pb.ResolveSessionRequest(name=n["session"], summary="s")
    ),
    "escalate": lambda c, n: c.call(
        "EscalateSession", pb.EscalateSessionRequest(name=n["session"], reason="r")
    ),
    "abandon": lambda c, n: c.call("AbandonSession", pb.AbandonSessionRequest(name=n["session"])),
    "claim": lambda c, n: c.call("ClaimSession", pb.ClaimSessionRequest(name=n["session"])),
    "assign": lambda c, n: c.as_role(Role.TEAM_ADMIN).call(
        "AssignSession", pb.AssignSessionRequest(name=n["session"], assignee=str(c.user))
    ),
    "preview note": lambda c, n: c.call(
        "PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=n["session"])
    ),
    "preview package": lambda c, n: c.call(
        "PreviewEscalationPackage", pb.PreviewEscalationPackageRequest(name=n["session"])
    ),
    "post note": lambda c, n: c.call(
        "PostResolutionNote", pb.PostResolutionNoteRequest(name=n["session"], external_id="x")
    ),
    "post package": lambda c, n: c.call(
        "PostEscalationPackage", pb.PostEscalationPackageRequest(name=n["session"], external_id="x")
    ),
}


@pytest.mark.parametrize("label", list(CALLS))
async def test_other_account_sees_not_found_exactly_like_missing(world: dict[str, Any], label: str) -> None:
    names = {k: world[k].name for k in ("session", "item", "fact", "fix")}
    missing, swapped = _swap_ids(names)
    code, reason, message = await _error(CALLS[label](world["b"], names))
    missing_code, missing_reason, missing_message = await _error(CALLS[label](world["b"], missing))
    assert code is grpc.StatusCode.NOT_FOUND, label
    assert (code, reason) == (missing_code, missing_reason)
    # Same message but for the ids asked about.
    for old, new in swapped.items():
        message = message.replace(old, "<id>")
        missing_message = missing_message.replace(new, "<id>")
    assert message == missing_message


async def test_nothing_of_a_changed_and_lists_stay_apart(world: dict[str, Any]) -> None:
    a, b, session = world["a"], world["b"], world["session"]
    for call in CALLS.values():
        with contextlib.suppress(grpc.aio.AioRpcError):
            await call(b, {k: world[k].name for k in ("session", "item", "fact", "fix")})
    after = await a.get(session)
    assert after.status == pb.SESSION_STATUS_ACTIVE
    assert after.state_version == 3  # lane item, fact, fix: B's attempts changed nothing
    assert after.title == session.title and not after.HasField("resolution_note")
    listed = await b.call("ListSessions", pb.ListSessionsRequest())
    assert session.name not in {s.name for s in listed.sessions}
    # B cannot reference A's lane item from B's own session.
    mine = await b.session("CW #5150")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await b.fact(mine, "x", source=pb.FACT_SOURCE_TASK_LANE, source_ref=world["item"].name)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    # Same ticket, same request id across accounts: independent sessions.
    request_id = str(uuid.uuid4())
    sa = await a.session("CW #777", request_id=request_id)
    sb = await b.session("CW #777", request_id=request_id)
    assert sa.name != sb.name
