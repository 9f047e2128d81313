"""Notes through HTTP: a rejected fix with its reason, corrections as revisions, the time zone."""

from __future__ import annotations

import uuid

import httpx

from services.core.auth import Role
from tests.gateway.test_end_to_end import Ui, _violations, client  # noqa: F401  (fixture)
from tests.support import Keys


async def test_a_note_is_corrected_after_a_change_and_its_revisions_listed(
    client: httpx.AsyncClient,  # noqa: F811
    keys: Keys,
) -> None:
    ui = Ui(client, keys, uuid.uuid4(), role=Role.TEAM_ADMIN)
    zone = await ui.request("PATCH", "/v1/settings/notes.time_zone", json={"value": "America/New_York"})
    assert zone.status_code == 200 and zone.json()["valueType"] == "VALUE_TYPE_TIME_ZONE"
    bad_zone = await ui.request("PATCH", "/v1/settings/notes.time_zone", json={"value": "Europe/Atlantis"})
    assert bad_zone.status_code == 400 and "setting.value" in _violations(bad_zone)
    created = await ui.request(
        "POST",
        "/v1/sessions",
        json={"ticketRef": "CW #5150", "ticketKind": "TICKET_KIND_PSA", "title": "Mail"},
    )
    name = created.json()["session"]["name"]
    fix = (await ui.request("POST", f"/v1/{name}/fixes:suggest", json={})).json()
    rejected = await ui.request("POST", f"/v1/{fix['name']}:reject", json={"reason": "made it worse"})
    assert rejected.status_code == 200 and rejected.json()["rejectReason"] == "made it worse"
    assert rejected.json()["decider"] == str(ui.user)
    first = await ui.request("POST", f"/v1/{name}:postResolutionNote", json={"externalId": "CW-NOTE-1"})
    assert first.status_code == 200 and first.json()["resolutionNote"]["revision"] == 1
    await ui.request("POST", f"/v1/{name}:resolve", json={"summary": "Rebuilt the profile"})
    twice = await ui.request("POST", f"/v1/{name}:postResolutionNote", json={"externalId": "CW-NOTE-2"})
    note = twice.json()["resolutionNote"]
    assert note["revision"] == 2 and "Rebuilt the profile" in note["markdown"]
    assert "Fix applied" not in note["markdown"] and "made it worse" in note["markdown"]
    assert "Timeline (America/New_York)" in note["markdown"] and (
        " EST" in note["markdown"] or " EDT" in note["markdown"]
    )
    again = await ui.request("POST", f"/v1/{name}:postResolutionNote", json={"externalId": "CW-NOTE-3"})
    assert again.status_code == 400 and again.json()["details"][0]["reason"] == "ALREADY_POSTED"
    listed = await ui.request("GET", f"/v1/{name}/noteRevisions?kind=NOTE_KIND_RESOLUTION_NOTE")
    assert listed.status_code == 200
    assert [r["externalId"] for r in listed.json()["noteRevisions"]] == ["CW-NOTE-1", "CW-NOTE-2"]
    assert listed.json()["noteRevisions"][1]["name"].startswith(f"{name}/noteRevisions/")
    bad_kind = await ui.request("GET", f"/v1/{name}/noteRevisions?kind=NOTE_KIND_NOPE")
    assert bad_kind.status_code == 400
    stranger = Ui(client, keys, uuid.uuid4())
    hidden = await stranger.request("GET", f"/v1/{name}/noteRevisions")
    assert hidden.status_code == 404
