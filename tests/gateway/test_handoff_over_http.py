"""Handoff through HTTP, as the UI does it: an L1 walk escalated into the team
queue, the queue listed, the ticket opened and handed over, claim and assign
with their errors, and another account's session never showing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from services.core.auth import Role
from tests.gateway.test_end_to_end import Ui, _violations, client  # noqa: F401  (fixture)
from tests.support import Keys

QUEUE = "/v1/sessions?unassigned=true&status=SESSION_STATUS_ACTIVE"


class Person(Ui):
    """A UI user of ``account`` with a display name in their token."""

    def __init__(
        self, http: httpx.AsyncClient, keys: Keys, account: uuid.UUID, name: str, role: Role = Role.ENGINEER
    ) -> None:
        super().__init__(http, keys, account, role=role)
        self.name = name

    def headers(self) -> dict[str, str]:
        token = self.keys.token(account_id=self.account, user_id=self.user, role=self.role, name=self.name)
        return {"Authorization": f"Bearer {token}"}


def _reason(response: httpx.Response) -> str:
    return str(response.json()["details"][0]["reason"])


async def _escalated_walk(l1: Person, ticket: str) -> dict[str, Any]:
    started = await l1.request(
        "POST",
        "/v1/walks",
        json={"ticketRef": ticket, "ticketKind": "TICKET_KIND_PSA", "kind": "WALK_KIND_ADHOC"},
    )
    assert started.status_code == 201, started.text
    walk = started.json()["walk"]
    await l1.request("POST", f"/v1/{walk['name']}:addNote", json={"text": "Toner replaced, still offline"})
    escalated = await l1.request(
        "POST",
        f"/v1/{walk['name']}:escalate",
        json={"reason": "Printer offline for everyone", "category": "ESCALATION_CATEGORY_NEEDS_ACCESS"},
    )
    assert escalated.status_code == 200, escalated.text
    return dict(escalated.json())


async def test_the_team_queue_claim_and_assign_over_http(
    client: httpx.AsyncClient,  # noqa: F811
    keys: Keys,
) -> None:
    account = uuid.uuid4()
    l1 = Person(client, keys, account, "Lou L1")
    eve, sam = Person(client, keys, account, "Eve Engineer"), Person(client, keys, account, "Sam Engineer")
    admin = Person(client, keys, account, "Ada Admin", role=Role.TEAM_ADMIN)
    ticket = f"CW #{uuid.uuid4().int % 10**7}"
    walk = await _escalated_walk(l1, ticket)
    name = walk["session"]

    queue = await eve.request("GET", QUEUE)
    assert queue.status_code == 200
    [queued] = queue.json()["sessions"]
    assert queued["name"] == name and queued["escalatedWalk"] == walk["name"]
    assert queued["assignee"] == "" and queued["creatorDisplayName"] == "Lou L1"

    # Opening the ticket hands the escalated session over (200: nothing created).
    opened = await eve.request(
        "POST",
        "/v1/sessions",
        json={"ticketRef": ticket, "ticketKind": "TICKET_KIND_PSA", "title": "Printer"},
    )
    assert opened.status_code == 200 and "Location" not in opened.headers
    assert opened.json()["handedOver"] is True and opened.json()["resumed"] is True
    assert opened.json()["session"]["name"] == name

    stale = await eve.request("POST", f"/v1/{name}:claim", json={"etag": "7"})
    assert stale.status_code == 409 and _reason(stale) == "ETAG_MISMATCH"
    claimed = await eve.request("POST", f"/v1/{name}:claim", json={"etag": queued["etag"]})
    assert claimed.status_code == 200, claimed.text
    assert (
        claimed.json()["assignee"] == str(eve.user)
        and claimed.json()["assigneeDisplayName"] == "Eve Engineer"
    )
    assert claimed.json()["stateVersion"] == str(int(queued["stateVersion"]) + 1)
    assert (await eve.request("GET", QUEUE)).json()["sessions"] == []
    mine = await eve.request("GET", "/v1/sessions?assignee=me")
    assert [s["name"] for s in mine.json()["sessions"]] == [name]

    taken = await sam.request("POST", f"/v1/{name}:claim", json={})
    assert taken.status_code == 400 and _reason(taken) == "ALREADY_ASSIGNED"
    assert taken.json()["details"][0]["metadata"]["assignee"] == str(eve.user)
    blocked = await l1.request(
        "POST", f"/v1/{name}/facts", json={"text": "more", "source": "FACT_SOURCE_USER"}
    )
    assert blocked.status_code == 403 and _reason(blocked) == "NOT_SESSION_ASSIGNEE"
    worked = await eve.request(
        "POST", f"/v1/{name}/facts", json={"text": "Spooler hung", "source": "FACT_SOURCE_USER"}
    )
    assert worked.status_code == 201

    by_engineer = await eve.request("POST", f"/v1/{name}:assign", json={"assignee": str(sam.user)})
    assert by_engineer.status_code == 403
    bad = await admin.request("POST", f"/v1/{name}:assign", json={"assignee": "sam"})
    assert bad.status_code == 400 and "assignee" in _violations(bad)
    current = (await admin.request("GET", f"/v1/{name}")).json()
    outdated = await admin.request(
        "POST", f"/v1/{name}:assign", json={"assignee": str(sam.user), "etag": queued["etag"]}
    )
    assert outdated.status_code == 409 and _reason(outdated) == "ETAG_MISMATCH"
    assigned = await admin.request(
        "POST",
        f"/v1/{name}:assign",
        json={"assignee": str(sam.user), "assigneeDisplayName": "Sam Engineer", "etag": current["etag"]},
    )
    assert assigned.status_code == 200 and assigned.json()["assigneeDisplayName"] == "Sam Engineer"
    now_blocked = await eve.request("PATCH", f"/v1/{name}", json={"title": "mine"})
    assert now_blocked.status_code == 403
    back = await admin.request("POST", f"/v1/{name}:assign", json={"assignee": ""})
    assert back.status_code == 200 and back.json()["assignee"] == ""
    assert [s["name"] for s in (await eve.request("GET", QUEUE)).json()["sessions"]] == [name]

    await admin.request("POST", f"/v1/{name}:abandon", json={})
    ended = await eve.request("POST", f"/v1/{name}:claim", json={})
    assert ended.status_code == 400 and _reason(ended) == "SESSION_NOT_ACTIVE"


async def test_another_accounts_session_is_never_seen_over_http(
    client: httpx.AsyncClient,  # noqa: F811
    keys: Keys,
) -> None:
    ours = Person(client, keys, uuid.uuid4(), "Lou L1")
    name = (await _escalated_walk(ours, f"CW #{uuid.uuid4().int % 10**7}"))["session"]
    stranger = Person(client, keys, uuid.uuid4(), "Mallory", role=Role.TEAM_ADMIN)
    missing = f"sessions/{uuid.uuid4()}"
    for path, body in ((":claim", {}), (":assign", {"assignee": str(stranger.user)})):
        theirs = await stranger.request("POST", f"/v1/{name}{path}", json=body)
        nothing = await stranger.request("POST", f"/v1/{missing}{path}", json=body)
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.json()["message"].replace(name, "<name>") == nothing.json()["message"].replace(
            missing, "<name>"
        )
    assert (await stranger.request("GET", QUEUE)).json()["sessions"] == []
    assert (await ours.request("GET", f"/v1/{name}")).json()["assignee"] == ""
