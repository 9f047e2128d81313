"""Prompts through the gateway: list, override, stale etag, reset, roles, tenancy."""

from __future__ import annotations

import uuid

import httpx

from services.core.auth import Role
from tests.gateway.test_end_to_end import Ui, _violations, client  # noqa: F401  (fixture)
from tests.support import Keys


async def test_prompts_over_http(client: httpx.AsyncClient, keys: Keys) -> None:  # noqa: F811
    ui = Ui(client, keys, uuid.uuid4())
    listed = await ui.request("GET", "/v1/prompts?pageSize=1000")
    assert listed.status_code == 200
    names = [p["name"] for p in listed.json()["prompts"]]
    assert "prompts/task.note" in names and names == sorted(names)
    one = await ui.request("GET", "/v1/prompts/task.note")
    assert one.json()["default"] is True and one.json()["purpose"] == "PROMPT_PURPOSE_TASK"
    changed = await ui.request(
        "PATCH",
        "/v1/prompts/task.note",
        json={"text": "Notes in {format}, briefly.", "etag": one.json()["etag"]},
    )
    assert changed.status_code == 200
    assert changed.json()["text"] == "Notes in {format}, briefly." and changed.json()["version"] == "2"
    stale = await ui.request(
        "PATCH", "/v1/prompts/task.note", json={"text": "Again.", "etag": one.json()["etag"]}
    )
    assert stale.status_code == 409 and stale.json()["details"][0]["reason"] == "ETAG_MISMATCH"
    too_long = await ui.request("PATCH", "/v1/prompts/task.note", json={"text": "x" * 20_001})
    assert too_long.status_code == 400 and "prompt.text" in _violations(too_long)
    other = Ui(client, keys, uuid.uuid4())
    assert (await other.request("GET", "/v1/prompts/task.note")).json()["default"] is True
    reset = await ui.request("POST", "/v1/prompts/task.note:reset", json={"etag": changed.json()["etag"]})
    assert reset.status_code == 200 and reset.json()["default"] is True
    assert reset.json()["text"] == one.json()["text"]
    ui.role = Role.VIEWER
    assert (await ui.request("GET", "/v1/prompts/task.note")).status_code == 200
    forbidden = await ui.request("PATCH", "/v1/prompts/task.note", json={"text": "x"})
    assert forbidden.status_code == 403
    missing = await ui.request("GET", "/v1/prompts/no.such")
    assert missing.status_code == 404
