"""Library and walks through HTTP against the real services: create, get,
list with paging, PATCH, a custom method, and their errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from services.core.auth import Role
from tests.gateway.test_end_to_end import Ui
from tests.support import Keys


@pytest.fixture
async def client(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as c:
        yield c


async def test_library_over_http(client: httpx.AsyncClient, keys: Keys) -> None:
    ui = Ui(client, keys, uuid.uuid4())
    for i in range(3):
        created = await ui.request(
            "POST", "/v1/scriptTemplates",
            json={"displayName": f"Restart {i}", "body": "Restart-Service {{name}}", "language": "LANGUAGE_POWERSHELL",
                  "parameters": [{"name": "name", "required": True}]},
        )  # fmt: skip
        assert created.status_code == 201, created.text
    name = created.json()["name"]
    page = await ui.request("GET", "/v1/scriptTemplates?pageSize=2&orderBy=TEMPLATE_ORDER_RECENCY")
    assert len(page.json()["scriptTemplates"]) == 2 and page.json()["nextPageToken"]
    rest = await ui.request(
        "GET",
        f"/v1/scriptTemplates?pageSize=2&orderBy=TEMPLATE_ORDER_RECENCY&pageToken={page.json()['nextPageToken']}",
    )
    assert [t["displayName"] for t in rest.json()["scriptTemplates"]] == ["Restart 0"]
    patched = await ui.request("PATCH", f"/v1/{name}", json={"description": "Restarts a service"})
    assert patched.status_code == 200 and patched.json()["description"] == "Restarts a service"
    rendered = await ui.request("POST", f"/v1/{name}:render", json={"values": {"name": "spooler"}})
    assert rendered.json() == {"body": "Restart-Service spooler"}
    used = await ui.request("POST", f"/v1/{name}:recordUse", json={})
    assert used.json()["usageCount"] == "1"
    missing = await ui.request("POST", f"/v1/{name}:render", json={"values": {}})
    assert missing.status_code == 400
    taken = await ui.request(
        "POST",
        "/v1/scriptTemplates",
        json={"displayName": "restart 0", "body": "x", "language": "LANGUAGE_BASH"},
    )
    assert taken.status_code == 409
    badge = await ui.request("GET", "/v1/draftTemplates:countPending")
    assert badge.json() == {"count": "0"}
    deleted = await ui.request("DELETE", f"/v1/{name}")
    assert deleted.status_code == 204
    assert (await ui.request("GET", f"/v1/{name}")).status_code == 404


async def test_walks_over_http(client: httpx.AsyncClient, keys: Keys) -> None:
    ui = Ui(client, keys, uuid.uuid4())
    tree = {
        "root": "q",
        "nodes": [
            {
                "id": "q",
                "kind": "NODE_KIND_QUESTION",
                "text": "Reboot helped?",
                "options": [{"label": "Yes", "next": "r"}, {"label": "No", "next": "e"}],
            },
            {"id": "r", "kind": "NODE_KIND_RESOLUTION", "text": "Done"},
            {"id": "e", "kind": "NODE_KIND_ESCALATION", "text": "Escalate"},
        ],
    }
    flow = await ui.request("POST", "/v1/flows", json={"displayName": "Reboot", "tree": tree})
    assert flow.status_code == 201, flow.text
    name = flow.json()["name"]
    bad = await ui.request(
        "POST", "/v1/flows", json={"displayName": "Bad", "tree": {"root": "x", "nodes": tree["nodes"]}}
    )
    assert bad.status_code == 400 and "flow.tree.root" in bad.text
    patched = await ui.request("PATCH", f"/v1/{name}", json={"displayName": "Reboot first"})
    assert patched.json()["displayName"] == "Reboot first" and patched.json()["version"] == 1
    published = await ui.request("POST", f"/v1/{name}:publish", json={})
    assert published.json()["status"] == "FLOW_STATUS_PUBLISHED"
    ui.role = Role.ENGINEER
    started = await ui.request(
        "POST",
        "/v1/walks",
        json={"ticketRef": "T-1", "ticketKind": "TICKET_KIND_PSA", "kind": "WALK_KIND_FLOW", "flow": name},
    )
    assert started.status_code == 201, started.text  # a new walk (a resumed one is 200)
    walk = started.json()["walk"]["name"]
    illegal = await ui.request("POST", f"/v1/{walk}:advance", json={"choice": "Maybe"})
    assert illegal.status_code == 400
    advanced = await ui.request("POST", f"/v1/{walk}:advance", json={"choice": "Yes"})
    assert advanced.json()["currentNode"] == "r"
    resolved = await ui.request("POST", f"/v1/{walk}:resolve", json={"summary": "Rebooted", "helpful": True})
    assert resolved.json()["status"] == "WALK_STATUS_RESOLVED"
    again = await ui.request("POST", f"/v1/{walk}:advance", json={"choice": "Yes"})
    assert again.status_code == 400 and again.json()["details"][0]["reason"] == "WALK_NOT_ACTIVE"
    for _ in range(2):
        await ui.request(
            "POST",
            "/v1/walks",
            json={
                "ticketRef": "T-2",
                "ticketKind": "TICKET_KIND_PSA",
                "kind": "WALK_KIND_ADHOC",
                "forceNew": True,
            },
        )
    page = await ui.request("GET", "/v1/walks?ticketRef=T-2&pageSize=1")
    assert len(page.json()["walks"]) == 1 and page.json()["nextPageToken"]
    other = Ui(client, keys, uuid.uuid4())
    assert (await other.request("GET", f"/v1/{walk}")).status_code == 404
