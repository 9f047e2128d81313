"""A session at the documented limits stays usable end to end: 70 scripts of
65,536 characters (4.6 MB of lane) are read, listed, resolved and become 70
drafts; nothing answers RESOURCE_EXHAUSTED, and a response never exceeds its
budget."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import httpx
from flowpilot.sessions.v1 import sessions_pb2 as pb

from services.core.auth import Role
from services.sessions.convert import RESPONSE_BUDGET_BYTES
from services.sessions.lane import MAX_LANE_BYTES
from tests.library.helpers import draft_rows
from tests.sessions.helpers import Caller, mask
from tests.support import Keys, RunDatabase, expect_error

SCRIPTS, SIZE = 70, 65_536


async def test_seventy_maximal_scripts_read_list_resolve_and_become_seventy_drafts(
    sessions_channel: grpc.aio.Channel, keys: Keys, database: RunDatabase, gateway_url: str
) -> None:
    me = Caller(sessions_channel, keys, role=Role.ENGINEER)
    session = await me.session()
    for n in range(SCRIPTS):
        await me.lane_item(
            session,
            kind=pb.LANE_ITEM_KIND_SCRIPT,
            title=f"Script {n}",
            script_body=f"# {n}\n" + "x" * (SIZE - len(f"# {n}\n")),
            script_language=pb.SCRIPT_LANGUAGE_POWERSHELL,
            status=pb.LANE_ITEM_STATUS_DONE,
        )

    full = await me.get(session)
    assert len(full.lane_items) == SCRIPTS and full.ByteSize() < RESPONSE_BUDGET_BYTES + 256 * 1024
    whole = [i for i in full.lane_items if not i.content_omitted]
    omitted = [i for i in full.lane_items if i.content_omitted]
    assert whole and omitted and all(len(i.script_body) == SIZE for i in whole)
    assert all(i.script_body == "" for i in omitted)
    # What a read left out, one GetLaneItem brings whole.
    item = await me.call("GetLaneItem", pb.GetLaneItemRequest(name=omitted[-1].name))
    assert len(item.script_body) == SIZE and not item.content_omitted
    await expect_error(
        me.call("GetLaneItem", pb.GetLaneItemRequest(name=f"{session.name}/laneItems/{uuid.uuid4().hex}")),
        grpc.StatusCode.NOT_FOUND,
    )
    basic = await me.call("GetSession", pb.GetSessionRequest(name=session.name, view=pb.SESSION_VIEW_BASIC))
    assert all(i.content_omitted and not i.script_body for i in basic.lane_items)

    listed = await me.call("ListSessions", pb.ListSessionsRequest())
    [mine] = [s for s in listed.sessions if s.name == session.name]
    assert len(mine.lane_items) == SCRIPTS and all(i.content_omitted for i in mine.lane_items)
    listed_full = await me.call(
        "ListSessions", pb.ListSessionsRequest(view=pb.SESSION_VIEW_FULL, page_size=1000)
    )
    assert listed_full.ByteSize() < RESPONSE_BUDGET_BYTES + 256 * 1024

    token = keys.token(account_id=me.account, user_id=me.user, role=Role.ENGINEER)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        through = await client.get(f"/v1/{session.name}", headers={"Authorization": f"Bearer {token}"})
        assert through.status_code == 200, through.text[:300]

    resolved = await me.call(
        "ResolveSession", pb.ResolveSessionRequest(name=session.name, summary="Mapped drives")
    )
    assert resolved.status == pb.SESSION_STATUS_RESOLVED
    async with asyncio.timeout(60):
        while len(await draft_rows(database, me.account)) < SCRIPTS:  # noqa: ASYNC110 (outbox delivery)
            await asyncio.sleep(0.2)
    drafts = await draft_rows(database, me.account)
    assert len(drafts) == SCRIPTS and {len(d.script_body) for d in drafts} == {SIZE}


async def test_a_lane_past_its_total_size_is_refused_and_unchanged(
    sessions_channel: grpc.aio.Channel, keys: Keys
) -> None:
    me = Caller(sessions_channel, keys, role=Role.ENGINEER)
    session = await me.session()
    big = {"kind": pb.LANE_ITEM_KIND_CHECK, "detail": "d" * 4000, "output": "o" * SIZE}
    per_item = 4000 + SIZE
    fits = MAX_LANE_BYTES // per_item
    items = [await me.lane_item(session, title=f"Check {n}", **big) for n in range(fits)]
    await expect_error(
        me.lane_item(session, title="One too many", **big),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="LANE_FULL",
    )
    assert len((await me.get(session)).lane_items) == fits
    updated = await me.call(
        "UpdateLaneItem",
        pb.UpdateLaneItemRequest(
            lane_item=pb.LaneItem(name=items[0].name, output="short"), update_mask=mask("output")
        ),
    )
    assert updated.output == "short"


async def test_a_full_page_ends_before_a_session_whose_lane_no_longer_fits(
    sessions_channel: grpc.aio.Channel, keys: Keys
) -> None:
    me = Caller(sessions_channel, keys, role=Role.ENGINEER)
    for _ in range(2):  # two sessions of 1.6 MB of lane: together past the 3 MiB budget
        session = await me.session()
        for n in range(25):
            await me.lane_item(session, kind=pb.LANE_ITEM_KIND_CHECK, title=f"Check {n}", output="o" * SIZE)
    first = await me.call("ListSessions", pb.ListSessionsRequest(view=pb.SESSION_VIEW_FULL))
    assert len(first.sessions) == 1 and first.next_page_token
    assert not any(i.content_omitted for i in first.sessions[0].lane_items)
    second = await me.call(
        "ListSessions", pb.ListSessionsRequest(view=pb.SESSION_VIEW_FULL, page_token=first.next_page_token)
    )
    assert len(second.sessions) == 1 and not second.next_page_token
    assert not any(i.content_omitted for i in second.sessions[0].lane_items)
    assert second.sessions[0].name != first.sessions[0].name
