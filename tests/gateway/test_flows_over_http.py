"""The flywheel's walks surface through HTTP: an AI-built walk saved as a
proposal, the flow catalogue, flow statistics."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from services.core.auth import Role
from tests.gateway.test_end_to_end import Ui, _violations, client  # noqa: F401  (fixture)
from tests.support import Keys


async def _ai_walk(l1: Ui) -> dict[str, Any]:
    started = await l1.request(
        "POST",
        "/v1/walks",
        json={
            "ticketRef": "CW #1",
            "ticketKind": "TICKET_KIND_PSA",
            "kind": "WALK_KIND_AI_BUILD",
            "problem": "VPN drops",
        },
    )
    assert started.status_code == 201, started.text
    walk = started.json()["walk"]
    root = next(n for n in walk["tree"]["nodes"] if n["id"] == walk["tree"]["root"])
    advanced = await l1.request(
        "POST", f"/v1/{walk['name']}:advance", json={"choice": root["options"][0]["label"]}
    )
    assert advanced.status_code == 200, advanced.text
    return dict(advanced.json())


async def test_an_ai_built_walk_saved_as_a_proposal_over_http(
    client: httpx.AsyncClient,  # noqa: F811
    keys: Keys,
) -> None:
    account = uuid.uuid4()
    l1 = Ui(client, keys, account, role=Role.ENGINEER)
    walk = await _ai_walk(l1)
    saved = await l1.request("POST", f"/v1/{walk['name']}:saveAsProposal", json={"rationale": "fixed it"})
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["source"] == "PROPOSAL_SOURCE_WALK" and body["status"] == "PROPOSAL_STATUS_PENDING"
    assert body["provenance"]["walk"] == walk["name"]
    assert body["provenance"]["technician"] == str(l1.user)
    assert body["provenance"]["path"] == walk["path"]
    assert body["tree"] == walk["tree"]
    again = await l1.request("POST", f"/v1/{walk['name']}:saveAsProposal", json={})
    assert again.json()["name"] == body["name"]
    too_long = await l1.request("POST", f"/v1/{walk['name']}:saveAsProposal", json={"displayName": "x" * 201})
    assert too_long.status_code == 400 and "displayName" in _violations(too_long)
    stranger = Ui(client, keys, uuid.uuid4())
    hidden = await stranger.request("POST", f"/v1/{walk['name']}:saveAsProposal", json={})
    assert hidden.status_code == 404


TREE = {
    "root": "r",
    "nodes": [{"id": "r", "kind": "NODE_KIND_RESOLUTION", "text": "Reinstall the scanner driver"}],
}


async def test_the_flow_catalogue_over_http(
    client: httpx.AsyncClient,  # noqa: F811
    keys: Keys,
) -> None:
    lead = Ui(client, keys, uuid.uuid4())
    made = await lead.request("POST", "/v1/flowCategories", json={"displayName": "Printing"})
    assert made.status_code == 201, made.text
    category = made.json()
    assert category["depth"] == 1
    flow = await lead.request(
        "POST",
        "/v1/flows",
        json={"displayName": "Scanner offline", "tree": TREE, "category": category["name"], "tags": ["Scan"]},
    )
    assert flow.status_code == 201, flow.text
    assert flow.json()["tags"] == ["scan"] and flow.json()["category"] == category["name"]
    found = await lead.request(
        "GET",
        "/v1/flows",
        params={
            "query": "driver",
            "tag": "scan",
            "category": category["name"],
            "orderBy": "FLOW_ORDER_RELEVANCE",
        },
    )
    assert found.status_code == 200, found.text
    assert [f["displayName"] for f in found.json()["flows"]] == ["Scanner offline"]
    listed = await lead.request("GET", "/v1/flowCategories")
    assert [c["name"] for c in listed.json()["flowCategories"]] == [category["name"]]
    busy = await lead.request("DELETE", f"/v1/{category['name']}")
    assert busy.status_code == 400 and busy.json()["details"][0]["reason"] == "CATEGORY_NOT_EMPTY"
    tags = await lead.request(
        "POST", "/v1/flows", json={"displayName": "x", "tree": TREE, "tags": ["x" * 41]}
    )
    assert tags.status_code == 400 and "flow.tags[0]" in _violations(tags)
    stranger = Ui(client, keys, uuid.uuid4())
    assert (await stranger.request("GET", f"/v1/{category['name']}")).status_code == 404
    assert (await stranger.request("DELETE", f"/v1/{category['name']}")).status_code == 404
    hidden = await stranger.request("GET", "/v1/flows", params={"category": category["name"]})
    assert hidden.json().get("flows", []) == []


async def test_flow_stats_over_http(
    client: httpx.AsyncClient,  # noqa: F811
    keys: Keys,
) -> None:
    account = uuid.uuid4()
    lead = Ui(client, keys, account, role=Role.TEAM_ADMIN)
    tree = {
        "root": "q1",
        "nodes": [
            {
                "id": "q1",
                "kind": "NODE_KIND_QUESTION",
                "text": "Plugged in?",
                "options": [{"label": "Yes", "next": "r1"}, {"label": "No", "next": "r2"}],
            },
            {"id": "r1", "kind": "NODE_KIND_RESOLUTION", "text": "Reboot"},
            {"id": "r2", "kind": "NODE_KIND_RESOLUTION", "text": "Plug it in"},
        ],
    }
    flow = (await lead.request("POST", "/v1/flows", json={"displayName": "Power", "tree": tree})).json()
    await lead.request("POST", f"/v1/{flow['name']}:publish", json={})
    walk = (
        await lead.request(
            "POST",
            "/v1/walks",
            json={
                "ticketRef": "CW #2",
                "ticketKind": "TICKET_KIND_PSA",
                "kind": "WALK_KIND_FLOW",
                "flow": flow["name"],
            },
        )
    ).json()["walk"]
    await lead.request("POST", f"/v1/{walk['name']}:advance", json={"choice": "No"})
    await lead.request("POST", f"/v1/{walk['name']}:resolve", json={"summary": "plugged in"})
    got = await lead.request("GET", f"/v1/{flow['name']}/stats")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["versions"][0]["started"] == "1" and body["versions"][0]["resolved"] == "1"
    assert body["versions"][0]["medianTimeToResolve"].endswith("s")
    nodes = {n["node"]: n for n in body["nodes"]}
    assert nodes["q1"]["passed"] == "1" and nodes["r2"]["resolvedHere"] == "1"
    engineer = Ui(client, keys, account, role=Role.ENGINEER)
    assert (await engineer.request("GET", f"/v1/{flow['name']}/stats")).status_code == 403
    other = Ui(client, keys, uuid.uuid4(), role=Role.TEAM_ADMIN)
    assert (await other.request("GET", f"/v1/{flow['name']}/stats")).status_code == 404
