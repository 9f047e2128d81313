"""Flow statistics: seeded walks counted per version and per node, a step
back taken back, another account's flow never shown, roles."""

from __future__ import annotations

import grpc
import pytest
from flowpilot.walks.v1 import walks_pb2 as pb
from google.protobuf import field_mask_pb2

from services.core.auth import Role
from services.walks import stats
from services.walks.stats_storage import Ended
from tests.support import Keys
from tests.support import expect_error as _fails
from tests.walks.helpers import Tech, printer_tree


@pytest.fixture
def tech(walks_channel: grpc.aio.Channel, keys: Keys) -> Tech:
    return Tech(walks_channel, keys)


def test_node_counts_merge_passes_and_endings_newest_version_first() -> None:
    merged = stats.node_counts(
        {(1, "q1"): 3, (2, "q1"): 1, (2, "q2"): 1},
        [
            Ended(2, "r2", resolved=1, escalated=0, abandoned=0),
            Ended(1, "q1", resolved=0, escalated=0, abandoned=2),
        ],
    )
    assert [(n.version, n.node, n.passed, n.resolved_here, n.abandoned_here) for n in merged] == [
        (2, "q1", 1, 0, 0),
        (2, "q2", 1, 0, 0),
        (2, "r2", 0, 1, 0),
        (1, "q1", 3, 0, 2),
    ]


async def _walk(engineer: Tech, flow: pb.Flow, *choices: str) -> pb.Walk:
    walk = (await engineer.start(kind=pb.WALK_KIND_FLOW, flow=flow.name)).walk
    for choice in choices:
        walk = await engineer.advance(walk, choice)
    return walk


async def test_stats_count_walks_by_version_and_node(tech: Tech) -> None:
    flow = await tech.flow()
    engineer = tech.as_role(Role.ENGINEER)
    # Version 1: two resolved at r1 (No) and r2 (Yes, Yes), one abandoned at q2, one active.
    for choices in (("No",), ("Yes", "Yes")):
        walk = await _walk(engineer, flow, *choices)
        await engineer.call("ResolveWalk", pb.ResolveWalkRequest(name=walk.name, summary="ok", helpful=True))
    stuck = await _walk(engineer, flow, "Yes")
    await engineer.call("AbandonWalk", pb.AbandonWalkRequest(name=stuck.name))
    wandering = await _walk(engineer, flow, "Yes")
    await engineer.call("StepBackWalk", pb.StepBackWalkRequest(name=wandering.name))  # q1's step taken back
    # Version 2 (a new tree): one walk resolved at r1.
    changed = await tech.call(
        "UpdateFlow",
        pb.UpdateFlowRequest(
            flow=pb.Flow(name=flow.name, tree=printer_tree(" (v2)")),
            update_mask=field_mask_pb2.FieldMask(paths=["tree"]),
        ),
    )
    assert changed.version == 2
    await tech.call("PublishFlow", pb.PublishFlowRequest(name=flow.name))
    latest = await _walk(engineer, flow, "No")
    await engineer.call("ResolveWalk", pb.ResolveWalkRequest(name=latest.name, summary="ok"))

    got = await tech.call("GetFlowStats", pb.GetFlowStatsRequest(name=f"{flow.name}/stats"))
    assert got.name == f"{flow.name}/stats"
    v2, v1 = got.versions
    assert (v2.version, v2.started, v2.resolved, v2.active) == (2, 1, 1, 0)
    assert (v1.version, v1.started, v1.resolved, v1.escalated, v1.abandoned, v1.active) == (1, 4, 2, 0, 1, 1)
    assert (
        v1.HasField("median_time_to_resolve") and v1.median_time_to_resolve.ToTimedelta().total_seconds() >= 0
    )
    nodes = {(n.version, n.node): n for n in got.nodes}
    # q1: four walks stepped from it, one stepped back: three.
    assert nodes[(1, "q1")].passed == 3
    assert nodes[(1, "q2")].passed == 1 and nodes[(1, "q2")].abandoned_here == 1
    assert nodes[(1, "r1")].resolved_here == 1 and nodes[(1, "r2")].resolved_here == 1
    assert nodes[(2, "q1")].passed == 1 and nodes[(2, "r1")].resolved_here == 1
    assert [n.version for n in got.nodes] == sorted((n.version for n in got.nodes), reverse=True)


async def test_stats_are_for_team_admins_of_the_flows_account(tech: Tech, keys: Keys) -> None:
    flow = await tech.flow()
    request = pb.GetFlowStatsRequest(name=f"{flow.name}/stats")
    await _fails(tech.as_role(Role.ENGINEER).call("GetFlowStats", request), grpc.StatusCode.PERMISSION_DENIED)
    stranger = Tech(tech.channel, keys)
    await _fails(stranger.call("GetFlowStats", request), grpc.StatusCode.NOT_FOUND)
    await _fails(
        tech.call("GetFlowStats", pb.GetFlowStatsRequest(name=flow.name)), grpc.StatusCode.INVALID_ARGUMENT
    )
    empty = await tech.call("GetFlowStats", request)
    assert list(empty.versions) == [] and list(empty.nodes) == []


async def test_stats_cover_the_newest_versions_only(tech: Tech, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "MAX_VERSIONS", 1)
    flow = await tech.flow()
    engineer = tech.as_role(Role.ENGINEER)
    await _walk(engineer, flow, "Yes")
    await tech.call(
        "UpdateFlow",
        pb.UpdateFlowRequest(
            flow=pb.Flow(name=flow.name, tree=printer_tree(" (v2)")),
            update_mask=field_mask_pb2.FieldMask(paths=["tree"]),
        ),
    )
    await tech.call("PublishFlow", pb.PublishFlowRequest(name=flow.name))
    await _walk(engineer, flow, "No")
    got = await tech.call("GetFlowStats", pb.GetFlowStatsRequest(name=f"{flow.name}/stats"))
    assert [v.version for v in got.versions] == [2]
    assert {n.version for n in got.nodes} == {2}
