"""The issue's case through HTTP: a resolved session's script with a password
becomes a draft without it, approving publishes none, and a template with a
secret is refused unless a team_admin keeps it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from services.core.auth import Role
from tests.gateway.test_end_to_end import Ui
from tests.support import Keys

NET_USE = r"net use Z: \\fs01\share /user:CONTOSO\svc-backup password=Sup3rS3cret!"
SECRET = "Sup3rS3cret!"


@pytest.fixture
async def client(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as c:
        yield c


async def _resolved_with(ui: Ui, script: str) -> None:
    created = await ui.request(
        "POST",
        "/v1/sessions",
        json={"ticketRef": "CW #48213", "ticketKind": "TICKET_KIND_PSA", "title": "Backup share lost"},
    )
    session = created.json()["session"]["name"]
    item = await ui.request(
        "POST",
        f"/v1/{session}/laneItems",
        json={"kind": "LANE_ITEM_KIND_SCRIPT", "title": "Map the backup share", "scriptBody": script,
              "scriptLanguage": "SCRIPT_LANGUAGE_CMD"},
    )  # fmt: skip
    assert item.status_code == 201, item.text
    done = await ui.request("PATCH", f"/v1/{item.json()['name']}", json={"status": "LANE_ITEM_STATUS_DONE"})
    assert done.status_code == 200, done.text
    resolved = await ui.request("POST", f"/v1/{session}:resolve", json={"summary": "Mapped the share again"})
    assert resolved.status_code == 200, resolved.text


async def _the_draft(ui: Ui, seconds: float = 15.0) -> dict[str, object]:
    """The account's one draft, once the outbox delivered it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        drafts = (await ui.request("GET", "/v1/draftTemplates")).json().get("draftTemplates", [])
        if drafts:
            (draft,) = drafts
            return dict(draft)
        await asyncio.sleep(0.1)
    raise AssertionError("no draft arrived")


async def test_script_credentials_over_http(client: httpx.AsyncClient, keys: Keys) -> None:
    ui = Ui(client, keys, uuid.uuid4())
    await _resolved_with(ui, NET_USE)
    draft = await _the_draft(ui)
    assert draft["scriptBody"] == r"net use Z: \\fs01\share /user:CONTOSO\svc-backup password={{password}}"
    assert draft["redactions"] == [{"parameter": "password", "kind": "password", "line": 1}]
    assert {"name": "password", "secret": True}.items() <= draft["parameters"][0].items()  # type: ignore[index]
    assert SECRET not in json.dumps(draft)

    approved = await ui.request(
        "POST", f"/v1/{draft['name']}:approve", json={"displayName": "Map backup share"}
    )
    assert approved.status_code == 200, approved.text
    assert SECRET not in approved.text
    assert "{{password}}" in approved.json()["scriptTemplate"]["body"]

    template = {"displayName": "Lab share", "body": NET_USE, "language": "LANGUAGE_CMD"}
    refused = await ui.request("POST", "/v1/scriptTemplates", json=template)
    assert refused.status_code == 400 and SECRET not in refused.text
    details = refused.json()["details"]
    assert any(d.get("reason") == "SECRET_DETECTED" for d in details)
    (violations,) = [d["fieldViolations"] for d in details if d["@type"].endswith("BadRequest")]
    assert violations[0]["field"] == "scriptTemplate.body"  # the JSON name, as the gateway answers
    assert "password on line 1" in violations[0]["description"]

    ui.role = Role.ENGINEER
    forbidden = await ui.request(
        "POST", "/v1/scriptTemplates", json=template, params={"allowDetectedSecrets": "true"}
    )
    assert forbidden.status_code == 403
    ui.role = Role.TEAM_ADMIN
    kept = await ui.request(
        "POST", "/v1/scriptTemplates", json=template, params={"allowDetectedSecrets": "true"}
    )
    assert kept.status_code == 201, kept.text
    assert kept.json()["body"] == NET_USE
