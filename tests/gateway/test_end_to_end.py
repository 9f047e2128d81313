"""Through HTTP against the real services on real PostgreSQL: the UI's view."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.core.auth import Role
from tests.support import Keys


class Ui:
    def __init__(
        self, client: httpx.AsyncClient, keys: Keys, account: uuid.UUID, role: Role = Role.TEAM_ADMIN
    ) -> None:
        self.client, self.keys, self.account, self.user = client, keys, account, uuid.uuid4()
        self.role = role

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.keys.token(account_id=self.account, user_id=self.user, role=self.role)}"
        }

    async def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return await self.client.request(method, path, headers=self.headers(), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def client(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=20) as c:
        yield c


@pytest.fixture
def ui(client: httpx.AsyncClient, keys: Keys) -> Ui:
    return Ui(client, keys, uuid.uuid4())


def _violations(response: httpx.Response) -> dict[str, str]:
    for detail in response.json()["details"]:
        if detail["@type"].endswith("BadRequest"):
            return {v["field"]: v["description"] for v in detail["fieldViolations"]}
    return {}


async def test_settings_over_http(ui: Ui) -> None:
    page = await ui.request("GET", "/v1/settings?pageSize=4")
    assert page.status_code == 200
    first = page.json()
    assert len(first["settings"]) == 4 and first["nextPageToken"]
    # The rest in one page, however many settings the catalogue holds.
    rest = await ui.request("GET", f"/v1/settings?pageSize=1000&pageToken={first['nextPageToken']}")
    assert rest.json()["nextPageToken"] == ""
    one = await ui.request("GET", "/v1/settings/notes.format")
    assert one.json()["value"] == "markdown" and one.json()["default"] is True
    changed = await ui.request(
        "PATCH", "/v1/settings/notes.format", json={"value": "html", "etag": one.json()["etag"]}
    )
    assert changed.status_code == 200 and changed.json()["value"] == "html"
    stale = await ui.request(
        "PATCH", "/v1/settings/notes.format", json={"value": "plain", "etag": one.json()["etag"]}
    )
    assert stale.status_code == 409 and stale.json()["details"][0]["reason"] == "ETAG_MISMATCH"
    bad = await ui.request("PATCH", "/v1/settings/walks.stale_after_hours", json={"value": 500})
    assert bad.status_code == 400 and "setting.value" in _violations(bad)
    reset = await ui.request("POST", "/v1/settings/notes.format:reset", json={})
    assert reset.status_code == 200 and reset.json()["default"] is True
    ui.role = Role.VIEWER
    forbidden = await ui.request("PATCH", "/v1/settings/notes.format", json={"value": "plain"})
    assert forbidden.status_code == 403
    missing = await ui.request("GET", "/v1/settings/no.such")
    assert missing.status_code == 404


async def test_sessions_over_http(ui: Ui) -> None:
    created = await ui.request(
        "POST",
        "/v1/sessions",
        json={"ticketRef": "CW #48213", "ticketKind": "TICKET_KIND_PSA", "title": "VPN drops"},
    )
    assert created.status_code == 201, created.text
    session = created.json()["session"]
    name = session["name"]
    assert session["stateVersion"] == "0"  # int64 as a string
    got = await ui.request("GET", f"/v1/{name}")
    assert got.json()["title"] == "VPN drops"
    patched = await ui.request("PATCH", f"/v1/{name}", json={"title": "VPN drops hourly", "etag": "0"})
    assert patched.status_code == 200 and patched.json()["title"] == "VPN drops hourly"
    assert patched.json()["problem"] == ""  # only the title was in the body, so only it changed
    fact = await ui.request(
        "POST", f"/v1/{name}/facts", json={"text": "Drops at :00", "source": "FACT_SOURCE_USER"}
    )
    assert fact.status_code == 201
    listed = await ui.request("GET", f"/v1/{name}/facts?pageSize=1")
    assert [f["text"] for f in listed.json()["facts"]] == ["Drops at :00"]
    fix = await ui.request("POST", f"/v1/{name}/fixes:suggest", json={})
    assert fix.status_code == 200 and fix.json()["active"] is True
    active = await ui.request("GET", f"/v1/{name}/fixes:active")
    assert active.json()["name"] == fix.json()["name"]
    deleted = await ui.request("DELETE", f"/v1/{fact.json()['name']}")
    assert deleted.status_code == 200 and deleted.json()["deleteTime"]
    resolved = await ui.request("POST", f"/v1/{name}:resolve", json={"summary": "Replaced the router"})
    assert resolved.json()["status"] == "SESSION_STATUS_RESOLVED"
    again = await ui.request("POST", f"/v1/{name}:resolve", json={"summary": "x"})
    assert again.status_code == 400 and again.json()["details"][0]["reason"] == "INVALID_TRANSITION"
    note = await ui.request("POST", f"/v1/{name}:previewResolutionNote", json={})
    assert note.status_code == 200 and "Replaced the router" in note.json()["text"]
    for _ in range(3):
        await ui.request(
            "POST",
            "/v1/sessions",
            json={"ticketRef": "CW #1", "ticketKind": "TICKET_KIND_INTERNAL", "title": "t"},
            params={"force_new": "true"},
        )
    seen, token = [], ""
    while True:
        page = await ui.request(
            "GET", "/v1/sessions", params={"pageSize": 2, "pageToken": token, "ticketRef": "CW #1"}
        )
        seen += page.json()["sessions"]
        token = page.json()["nextPageToken"]
        if not token:
            break
    assert len(seen) == 3


async def test_sessions_errors_over_http(ui: Ui) -> None:
    missing = await ui.request("GET", f"/v1/sessions/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["code"] == 5
    invalid = await ui.request(
        "POST", "/v1/sessions", json={"ticketRef": "", "ticketKind": "TICKET_KIND_PSA", "title": "x" * 201}
    )
    assert invalid.status_code == 400
    assert {"session.ticketRef", "session.title"} <= set(_violations(invalid))  # named as the JSON sent
    unknown = await ui.request("GET", "/v1/sessions?colour=red")
    assert unknown.status_code == 400


async def test_tenant_isolation_over_http(client: httpx.AsyncClient, keys: Keys) -> None:
    a, b = Ui(client, keys, uuid.uuid4()), Ui(client, keys, uuid.uuid4())
    created = await a.request(
        "POST",
        "/v1/sessions",
        json={"ticketRef": "CW #9", "ticketKind": "TICKET_KIND_PSA", "title": "Secret"},
    )
    name = created.json()["session"]["name"]
    for method, path, body in (
        ("GET", f"/v1/{name}", None),
        ("GET", f"/v1/{name}/facts", None),
        ("PATCH", f"/v1/{name}", {"title": "pwned"}),
        ("POST", f"/v1/{name}:abandon", {}),
        ("POST", f"/v1/{name}:previewResolutionNote", {}),
    ):
        response = (
            await b.request(method, path, json=body) if body is not None else await b.request(method, path)
        )
        assert response.status_code == 404, (method, path, response.text)
    listed = await b.request("GET", "/v1/sessions")
    assert name not in {s["name"] for s in listed.json()["sessions"]}
    assert (await a.request("GET", f"/v1/{name}")).json()["title"] == "Secret"


async def test_one_request_is_one_trace(ui: Ui, spans: InMemorySpanExporter) -> None:
    created = await ui.request(
        "POST", "/v1/sessions", json={"ticketRef": "CW #77", "ticketKind": "TICKET_KIND_PSA", "title": "t"}
    )
    name = created.json()["session"]["name"]
    trace_id = uuid.uuid4().hex
    spans.clear()
    response = await ui.client.post(
        f"/v1/{name}:previewResolutionNote",
        json={},
        headers={**ui.headers(), "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"},
    )
    assert response.status_code == 200
    await asyncio.sleep(0.2)
    mine = [s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]
    servers = {s.name for s in mine if s.kind is SpanKind.SERVER}
    clients = {s.name for s in mine if s.kind is SpanKind.CLIENT}
    assert "/flowpilot.sessions.v1.SessionsService/PreviewResolutionNote" in servers
    assert "/flowpilot.settings.v1.SettingsService/ListSettings" in servers  # sessions → settings
    assert any(n.startswith("POST") for n in servers)  # the gateway's HTTP span
    assert "/flowpilot.sessions.v1.SessionsService/PreviewResolutionNote" in clients
    assert any(s.attributes and s.attributes.get("db.system") == "postgresql" for s in mine)
