"""AI-built walks through the Anthropic path, the stale-walk sweep, the
database rules, tenancy and grpcurl for walks."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest
from flowpilot.api.v1 import tickets_pb2
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from flowpilot.walks.v1 import walks_pb2 as pb
from google.protobuf import struct_pb2
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.ai.anthropic_backend import AnthropicBackend
from services.core.auth import Role, ServiceCredential
from services.core.clients import SettingsReader
from services.core.db import Database
from services.walks.sweep import StaleWalkSweep
from tests.conftest import FakeClock, SwitchableBackend
from tests.core.ai.transport import Replay
from tests.grpcurl import grpcurl
from tests.support import AUDIENCE, Keys, RunDatabase, failure
from tests.walks.helpers import Tech


@pytest.fixture
def tech(walks_channel: grpc.aio.Channel, keys: Keys) -> Tech:
    return Tech(walks_channel, keys)


def _anthropic(replay: Replay) -> AnthropicBackend:
    return AnthropicBackend(
        api_key="k", fast_model="fast", deep_model="deep", http_client=replay.client(), max_retries=0
    )


async def test_ai_build_through_the_anthropic_path(tech: Tech, walks_backend: SwitchableBackend) -> None:
    replay = Replay([(200, "tree_tool_use.json")])
    walks_backend.override = _anthropic(replay)
    walk = (await tech.start(kind=pb.WALK_KIND_AI_BUILD, problem="Mapped drive fails over VPN")).walk
    assert walk.tree.root == "q1" and len(walk.tree.nodes) == 5
    assert replay.requests[0]["model"] == "deep"  # building a tree is hard work: deep tier under auto
    assert "Mapped drive fails over VPN" in replay.requests[0]["messages"][0]["content"]


async def test_invalid_ai_trees_are_retried_once_then_refused(
    tech: Tech, walks_backend: SwitchableBackend
) -> None:
    ticket = f"T-{uuid.uuid4().hex[:6]}"
    walks_backend.override = _anthropic(Replay([(200, "fix_malformed.json"), (200, "text_only.json")]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tech.start(ticket, kind=pb.WALK_KIND_AI_BUILD, problem="x")
    assert failure(caught.value).reason == "AI_TREE_INVALID"
    listed = await tech.call("ListWalks", pb.ListWalksRequest(ticket_ref=ticket))
    assert list(listed.walks) == []  # no walk was created
    replay = Replay([(200, "text_only.json"), (200, "tree_tool_use.json")])
    walks_backend.override = _anthropic(replay)
    walk = (await tech.start(ticket, kind=pb.WALK_KIND_AI_BUILD, problem="x")).walk
    assert walk.tree.root == "q1" and len(replay.requests) == 2


async def _set_hours(channel: grpc.aio.Channel, tech: Tech, hours: int) -> None:
    await settings_pb2_grpc.SettingsServiceStub(channel).UpdateSetting(
        settings_pb2.UpdateSettingRequest(
            setting=settings_pb2.Setting(
                name="settings/walks.stale_after_hours", value=struct_pb2.Value(number_value=hours)
            )
        ),
        metadata=tech.as_role(Role.TEAM_ADMIN).md,
    )


async def test_sweep_follows_each_accounts_setting(
    walks_channel: grpc.aio.Channel,
    settings_channel: grpc.aio.Channel,
    keys: Keys,
    database: RunDatabase,
    service_keys: dict[str, Keys],
    walks_clock: FakeClock,
) -> None:
    quick, slow = Tech(walks_channel, keys), Tech(walks_channel, keys)
    await _set_hours(settings_channel, quick, 1)
    await _set_hours(settings_channel, slow, 10)
    quick_old = (await quick.start(kind=pb.WALK_KIND_ADHOC)).walk
    slow_old = (await slow.start(kind=pb.WALK_KIND_ADHOC)).walk
    walks_clock.advance(hours=2)
    quick_new = (await quick.start(kind=pb.WALK_KIND_ADHOC)).walk
    # The service's own sweep over every account, with the same clock.
    db = Database.connect(database.runtime_url("walks"), pool_size=2)
    settings = SettingsReader(settings_pb2_grpc.SettingsServiceStub(settings_channel), ttl_seconds=0)
    credential = ServiceCredential(
        service="walks", private_key=service_keys["walks"].private_pem, audience=AUDIENCE
    )
    sweep = StaleWalkSweep(db, settings, credential, clock=walks_clock)
    try:
        await sweep.sweep_all()
    finally:
        await db.dispose()
    states = {
        w.name: (await t.call("GetWalk", pb.GetWalkRequest(name=w.name))).status
        for t, w in ((quick, quick_old), (slow, slow_old), (quick, quick_new))
    }
    assert states == {
        quick_old.name: pb.WALK_STATUS_ABANDONED,
        slow_old.name: pb.WALK_STATUS_ACTIVE,
        quick_new.name: pb.WALK_STATUS_ACTIVE,
    }
    # On demand, for the caller's own account only.
    walks_clock.advance(hours=9)
    response = await slow.call("SweepStaleWalks", pb.SweepStaleWalksRequest())
    assert (response.abandoned, response.stale_after_hours) == (1, 10)
    assert (
        await quick.call("GetWalk", pb.GetWalkRequest(name=quick_new.name))
    ).status == pb.WALK_STATUS_ACTIVE
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await slow.as_role(Role.ENGINEER).call("SweepStaleWalks", pb.SweepStaleWalksRequest())
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_definer_function_reveals_only_account_ids(database: RunDatabase, tech: Tech) -> None:
    await tech.start(kind=pb.WALK_KIND_ADHOC)
    walks_login = create_async_engine(database.runtime_url("walks"))
    sessions_login = create_async_engine(database.runtime_url("sessions"))
    try:
        async with walks_login.connect() as conn:
            result = await conn.execute(text("SELECT * FROM walks.accounts_with_active_walks(100)"))
            assert list(result.keys()) == ["accounts_with_active_walks"]
            assert tech.account in set(result.scalars())
            assert (await conn.execute(text("SELECT count(*) FROM walks.l1_walk_sessions"))).scalar_one() == 0
        async with sessions_login.connect() as conn:
            with pytest.raises(DBAPIError, match="permission denied"):
                await conn.execute(text("SELECT * FROM walks.accounts_with_active_walks(100)"))
    finally:
        await walks_login.dispose()
        await sessions_login.dispose()


INSERT = """
INSERT INTO walks.l1_walk_sessions (id, account_id, created_by_user_id, ticket_ref, ticket_kind, session_kind, flow_id, flow_proposal_id, status)
VALUES (:id, :account, :user, 'T-1', :ticket_kind, :kind, :flow, :proposal, :status)
"""


@pytest.mark.parametrize(
    ("values", "constraint"),
    [
        ({"ticket_kind": "email"}, "ck_l1_walk_sessions_ticket_kind"),
        ({"kind": "guess"}, "ck_l1_walk_sessions_session_kind"),
        ({"status": "paused"}, "ck_l1_walk_sessions_status"),
        ({"kind": "flow"}, "ck_l1_walk_sessions_target_consistency"),
        ({"kind": "proposal"}, "ck_l1_walk_sessions_target_consistency"),
        ({"kind": "adhoc", "flow": "FLOW"}, "ck_l1_walk_sessions_target_consistency"),
        ({"kind": "ai_build", "flow": "FLOW"}, "ck_l1_walk_sessions_target_consistency"),
    ],
)
async def test_check_constraints_in_sql(
    database: RunDatabase, tech: Tech, values: dict[str, str], constraint: str
) -> None:
    flow = await tech.flow()
    flow_id = uuid.UUID(flow.name.removeprefix("flows/"))
    params = {
        "id": uuid.uuid4(),
        "account": tech.account,
        "user": uuid.uuid4(),
        "ticket_kind": "psa",
        "kind": "adhoc",
        "flow": None,
        "proposal": None,
        "status": "active",
    }
    params.update({k: (flow_id if v == "FLOW" else v) for k, v in values.items()})
    engine = create_async_engine(database.runtime_url("walks"))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_account_id', :a, true)"), {"a": str(tech.account)}
            )
            with pytest.raises(IntegrityError, match=constraint):
                await conn.execute(text(INSERT), params)
    finally:
        await engine.dispose()


async def test_the_reference_models_trap_is_closed(database: RunDatabase, tech: Tech) -> None:
    """A flow with walks can never vanish from under them: no delete in the API,
    no DELETE privilege for the service, and the foreign key restricts."""
    flow = await tech.flow()
    await tech.start(kind=pb.WALK_KIND_FLOW, flow=flow.name)
    flow_id = flow.name.removeprefix("flows/")
    runtime = create_async_engine(database.runtime_url("walks"))
    admin = create_async_engine(database.admin_url)
    try:
        async with runtime.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_account_id', :a, true)"), {"a": str(tech.account)}
            )
            with pytest.raises(DBAPIError, match="permission denied"):
                await conn.execute(text("DELETE FROM walks.flows WHERE id = :f"), {"f": flow_id})
        async with admin.begin() as conn:
            with pytest.raises(IntegrityError, match="l1_walk_sessions_flow_fkey"):
                await conn.execute(text("DELETE FROM walks.flows WHERE id = :f"), {"f": flow_id})
    finally:
        await runtime.dispose()
        await admin.dispose()
    archived = await tech.call("ArchiveFlow", pb.ArchiveFlowRequest(name=flow.name))
    assert archived.status == pb.FLOW_STATUS_ARCHIVED


async def test_tenant_isolation(walks_channel: grpc.aio.Channel, keys: Keys) -> None:
    a, b = Tech(walks_channel, keys), Tech(walks_channel, keys)
    flow = await a.flow()
    proposal = await a.call(
        "CreateFlowProposal",
        pb.CreateFlowProposalRequest(
            flow_proposal=pb.FlowProposal(display_name="p", tree=flow.tree, source=pb.PROPOSAL_SOURCE_USER)
        ),
    )
    walk = (await a.start(kind=pb.WALK_KIND_FLOW, flow=flow.name)).walk
    for method, request in (
        ("GetFlow", pb.GetFlowRequest(name=flow.name)),
        ("PublishFlow", pb.PublishFlowRequest(name=flow.name)),
        ("ArchiveFlow", pb.ArchiveFlowRequest(name=flow.name)),
        ("GetFlowProposal", pb.GetFlowProposalRequest(name=proposal.name)),
        ("ApproveFlowProposal", pb.ApproveFlowProposalRequest(name=proposal.name)),
        ("GetWalk", pb.GetWalkRequest(name=walk.name)),
        ("AdvanceWalk", pb.AdvanceWalkRequest(name=walk.name, choice="Yes")),
        (
            "EscalateWalk",
            pb.EscalateWalkRequest(name=walk.name, reason="r", category=pb.ESCALATION_CATEGORY_OTHER),
        ),
        ("AbandonWalk", pb.AbandonWalkRequest(name=walk.name)),
        (
            "StartWalk",
            pb.StartWalkRequest(
                ticket_ref="T",
                ticket_kind=tickets_pb2.TICKET_KIND_PSA,
                kind=pb.WALK_KIND_FLOW,
                flow=flow.name,
            ),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await b.call(method, request)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND, method
    assert list((await b.call("ListWalks", pb.ListWalksRequest())).walks) == []
    assert list((await b.call("ListFlows", pb.ListFlowsRequest())).flows) == []
    still = await a.call("GetWalk", pb.GetWalkRequest(name=walk.name))
    assert still.status == pb.WALK_STATUS_ACTIVE and not still.path


async def test_grpcurl(walks_address: str, keys: Keys) -> None:
    listed = await grpcurl("-plaintext", walks_address, "list", "flowpilot.walks.v1.WalksService")
    assert listed.code == 0 and "flowpilot.walks.v1.WalksService.AdvanceWalk" in listed.out
    token = keys.token(account_id=uuid.uuid4(), role=Role.ENGINEER)
    started = await grpcurl(
        "-plaintext", "-H", f"authorization: Bearer {token}",
        "-d", json.dumps({"ticket_ref": "T-1", "ticket_kind": "TICKET_KIND_INTERNAL", "kind": "WALK_KIND_AI_BUILD", "problem": "Outlook will not open"}),
        walks_address, "flowpilot.walks.v1.WalksService/StartWalk",
    )  # fmt: skip
    assert started.code == 0, started.err
    assert json.loads(started.out)["walk"]["kind"] == "WALK_KIND_AI_BUILD"
