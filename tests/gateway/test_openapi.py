"""The OpenAPI document as a generated client sees it: required fields by
direction, typed errors, lowerCamelCase query parameters, servers, tags,
probes and descriptions. No backends: the document and the gateway's own
rendering are checked against each other."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import grpc
import pytest
from flowpilot.sessions.v1 import sessions_pb2
from google.api import field_behavior_pb2
from google.protobuf import any_pb2, duration_pb2, symbol_database
from google.rpc import code_pb2, error_details_pb2, status_pb2
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from gateway import errors, openapi, transcode
from gateway.routes import Route, compile_routes, discover_services
from services.core.validation import behaviors

SCHEMA_PREFIX = "#/components/schemas/"


@functools.cache
def _routes() -> list[Route]:
    return compile_routes(discover_services())


@functools.cache
def _document() -> dict[str, Any]:
    return openapi.document(_routes())


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = _document()["components"]["schemas"]
    return schemas


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": _document()["components"]})


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, methods in _document()["paths"].items()
        for method, operation in methods.items()
    ]


def _operation(path: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = _document()["paths"][path][method]
    return operation


def _body_schema(path: str, method: str) -> dict[str, Any]:
    schema: dict[str, Any] = _operation(path, method)["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        resolved: dict[str, Any] = _schemas()[schema["$ref"].removeprefix(SCHEMA_PREFIX)]
        return resolved
    return schema


def _refs(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        found = {schema["$ref"].removeprefix(SCHEMA_PREFIX)} if "$ref" in schema else set()
        return found.union(*(_refs(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_refs(v) for v in schema))
    return set()


# --- 1. required, by direction ----------------------------------------------


def test_response_schemas_require_every_field_the_gateway_always_prints() -> None:
    session = _schemas()["flowpilot.sessions.v1.Session"]
    required = set(session["required"])
    # Scalars, enums and repeated fields are printed even at their defaults...
    assert {"name", "ticketRef", "ticketKind", "title", "status", "laneItems", "stateVersion"} <= required
    # ...singular messages (and timestamps) only when set.
    assert "createTime" not in required
    assert "resolutionNote" not in required
    assert session["properties"]["status"]["readOnly"] is True


@pytest.mark.parametrize(
    "name",
    sorted(
        n
        for n, s in _schemas().items()
        if n.startswith("flowpilot.") and "-" not in n and s.get("type") == "object"
    ),
)
def test_an_empty_response_message_as_rendered_matches_its_schema(name: str) -> None:
    schema = _schemas()[name]
    message = symbol_database.Default().GetSymbol(name)()
    rendered = transcode.to_json_object(message)
    assert set(schema.get("required", [])) == {
        f.json_name for f in message.DESCRIPTOR.fields if not f.has_presence
    }
    _validator({"$ref": SCHEMA_PREFIX + name}).validate(rendered)


def test_a_response_missing_an_always_printed_field_fails_its_schema() -> None:
    rendered = transcode.to_json_object(sessions_pb2.Session())
    del rendered["laneItems"]
    assert not _validator({"$ref": SCHEMA_PREFIX + "flowpilot.sessions.v1.Session"}).is_valid(rendered)


def test_request_bodies_require_the_REQUIRED_fields() -> None:
    body = _operation("/v1/sessions", "post")["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"] == SCHEMA_PREFIX + "flowpilot.sessions.v1.Session-Input"
    expected = [
        f.json_name
        for f in sessions_pb2.Session.DESCRIPTOR.fields
        if field_behavior_pb2.REQUIRED in behaviors(f)
    ]
    assert expected and _body_schema("/v1/sessions", "post")["required"] == expected
    assert {"ticketRef", "ticketKind", "title"} <= set(expected)
    # Output-only fields are never required of a request.
    assert "status" not in expected


def test_input_and_response_variants_never_mix() -> None:
    for path, method, operation in _operations():
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        for ref in _refs(body) if body else ():
            message_ref = ref.startswith("flowpilot.") and _schemas()[ref].get("type") == "object"
            assert not message_ref or ref.endswith(("-Input", "-Patch")), (path, method, ref)
        for code, response in operation["responses"].items():
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            for ref in _refs(schema) if schema else ():
                assert not ref.endswith(("-Input", "-Patch")), (path, method, code, ref)


def test_patch_bodies_are_partial() -> None:
    patches = [(p, m) for p, m, _ in _operations() if m == "patch"]
    assert len(patches) >= 5
    for path, method in patches:
        body = _body_schema(path, method)
        assert "required" not in body, path
        for ref in _refs(body):
            assert "required" not in _schemas()[ref], (path, ref)
    assert "required" in _schemas()["flowpilot.sessions.v1.Session-Input"]


def test_whole_request_bodies_leave_out_what_the_path_carries() -> None:
    body = _body_schema("/v1/sessions/{session}:resolve", "post")
    assert "name" not in body["properties"]
    assert "name" not in body.get("required", [])
    assert body["required"] == ["summary"]


def test_immutable_fields_say_so() -> None:
    field = _schemas()["flowpilot.sessions.v1.Session-Input"]["properties"]["ticketRef"]
    assert "Immutable" in field["description"]
    assert "Immutable" not in _schemas()["flowpilot.sessions.v1.Session-Input"]["properties"]["title"].get(
        "description", ""
    )


# --- 2. typed errors ------------------------------------------------------------


def test_every_api_operation_answers_typed_4xx_and_5xx() -> None:
    for path, method, operation in _operations():
        if path in ("/healthz", "/readyz"):
            continue
        for code in ("4XX", "5XX"):
            schema = operation["responses"][code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": SCHEMA_PREFIX + "google.rpc.Status"}, (path, method)
        assert "default" not in operation["responses"]
    items = _schemas()["google.rpc.Status"]["properties"]["details"]["items"]
    assert items["discriminator"]["propertyName"] == "@type"
    assert set(items["discriminator"]["mapping"]) == {
        "type.googleapis.com/google.rpc.ErrorInfo",
        "type.googleapis.com/google.rpc.BadRequest",
        "type.googleapis.com/google.rpc.RetryInfo",
    }
    assert len(items["oneOf"]) == 3


def _status_body(status: status_pb2.Status) -> Any:
    import json

    return json.loads(errors.status_json(status))


def test_the_gateway_error_bodies_match_the_status_schema() -> None:
    validator = _validator({"$ref": SCHEMA_PREFIX + "google.rpc.Status"})
    invalid = errors.bad_request("title: too long", field="title").status
    body = _status_body(invalid)
    assert [d["@type"] for d in body["details"]] == [
        "type.googleapis.com/google.rpc.ErrorInfo",
        "type.googleapis.com/google.rpc.BadRequest",
    ]
    validator.validate(body)
    retry = any_pb2.Any()
    retry.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=3, nanos=5)))
    limited = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="slow down", details=[retry])
    validator.validate(_status_body(limited))
    validator.validate(_status_body(errors.transport_error(grpc.StatusCode.UNAVAILABLE).status))
    # A detail type the document does not declare fails: the oneOf is closed on @type.
    other = any_pb2.Any()
    other.Pack(error_details_pb2.QuotaFailure())
    assert not validator.is_valid(_status_body(status_pb2.Status(code=8, message="m", details=[other])))
    # And a detail whose fields disagree with its @type fails too.
    wrong = {
        "code": 3,
        "message": "m",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": 5}],
    }
    assert not validator.is_valid(wrong)


# --- 3. query parameters, servers, tags, probes -----------------------------------


def test_query_parameters_are_lower_camel_case_and_resolve() -> None:
    by_path = {(r.http_method.lower(), openapi._path_and_params(r)[0]): r for r in _routes()}
    names = []
    for path, method, operation in _operations():
        for param in operation.get("parameters", []):
            if param["in"] != "query":
                continue
            names.append(param["name"])
            assert re.fullmatch(r"[a-z][A-Za-z0-9]*(\.[a-z][A-Za-z0-9]*)*", param["name"]), param["name"]
            route = by_path[(method, path)]
            assert transcode.resolve(route.method.input_type, param["name"]) is not None
    assert "pageSize" in names and "pageToken" in names and "page_size" not in names


def test_query_enums_do_not_offer_unspecified() -> None:
    enums = 0
    for _, _, operation in _operations():
        for param in operation.get("parameters", []):
            values = param["schema"].get("enum") or param["schema"].get("items", {}).get("enum") or []
            enums += bool(values)
            assert not [v for v in values if v.endswith("_UNSPECIFIED")], param
    assert enums >= 3
    status = next(p for p in _operation("/v1/sessions", "get")["parameters"] if p["name"] == "status")
    assert "SESSION_STATUS_ACTIVE" in status["schema"]["enum"]


def test_servers_and_declared_tags_with_descriptions() -> None:
    document = _document()
    assert document["servers"] == [{"url": "/", "description": "This gateway"}]
    declared = {t["name"]: t["description"] for t in document["tags"]}
    assert all(declared.values())
    used = {tag for _, _, operation in _operations() for tag in operation["tags"]}
    assert used == set(declared)
    assert {"SessionsService", "SettingsService", "LibraryService", "WalksService", "Health"} <= used


def test_probes_are_documented_without_a_token() -> None:
    healthz = _operation("/healthz", "get")
    readyz = _operation("/readyz", "get")
    assert healthz["security"] == [] and readyz["security"] == []
    assert set(readyz["responses"]) == {"200", "503"}
    body = readyz["responses"]["503"]["content"]["application/json"]["schema"]
    ok = {"status": "unavailable", "backends": {"flowpilot.sessions.v1": "UNAVAILABLE"}}
    assert Draft202012Validator(body).is_valid(ok)
    assert not Draft202012Validator(body).is_valid({"status": "unavailable"})


# --- 4. descriptions from the proto comments ---------------------------------------


def test_the_generated_package_carries_the_proto_comments() -> None:
    import flowpilot
    from flowpilot import _comments

    assert Path(_comments.__file__).parent == Path(next(iter(flowpilot.__path__)))
    assert _comments.COMMENTS["flowpilot.sessions.v1.Session"] == "A FlowPilot troubleshooting session."
    assert _comments.COMMENTS["flowpilot.sessions.v1.Session.ticket_ref"] == 'The ticket, e.g. "CW #48213".'


def test_comments_from_a_descriptor_set() -> None:
    from google.protobuf import descriptor_pb2

    from tools.genproto import comments

    file = descriptor_pb2.FileDescriptorProto(name="c.proto", package="pkg")
    message = file.message_type.add(name="Outer")
    message.field.add(name="f", number=1)
    message.nested_type.add(name="Inner")
    message.enum_type.add(name="Kind").value.add(name="KIND_A", number=0)
    file.service.add(name="Svc").method.add(name="Do")
    for path, text in [
        ((4, 0), " Outer.\n Two lines.\n"),
        ((4, 0, 2, 0), " A field.\n"),
        ((4, 0, 3, 0), " Inner.\n"),
        ((4, 0, 4, 0, 2, 0), " A value.\n"),
        ((6, 0), " The service.\n"),
        ((6, 0, 2, 0), " Does.\n"),
    ]:
        file.source_code_info.location.add(path=path, leading_comments=text)
    found = comments(descriptor_pb2.FileDescriptorSet(file=[file]).SerializeToString())
    assert found == {
        "pkg.Outer": "Outer.\nTwo lines.",
        "pkg.Outer.f": "A field.",
        "pkg.Outer.Inner": "Inner.",
        "pkg.Outer.Kind.KIND_A": "A value.",
        "pkg.Svc": "The service.",
        "pkg.Svc.Do": "Does.",
    }


def test_descriptions_come_from_the_proto_comments() -> None:
    schemas = _schemas()
    assert schemas["flowpilot.sessions.v1.Session"]["description"] == "A FlowPilot troubleshooting session."
    assert schemas["flowpilot.sessions.v1.Session-Input"]["properties"]["title"]["description"] == (
        "Short title (at most 200 characters)."
    )
    status = schemas["flowpilot.sessions.v1.SessionStatus"]["description"]
    assert "- `SESSION_STATUS_RESOLVED`: Fixed; `resolution_summary` says how." in status
    tags = {t["name"]: t["description"] for t in _document()["tags"]}
    assert tags["SessionsService"].startswith("FlowPilot troubleshooting sessions")
    resolve = _operation("/v1/sessions/{session}:resolve", "post")
    assert resolve["description"].startswith("Marks an active session resolved.")
    assert "Minimum role" in resolve["description"]
    page_size = next(p for p in _operation("/v1/sessions", "get")["parameters"] if p["name"] == "pageSize")
    assert page_size.get("description")


# --- 5. Redocly's recommended rules ------------------------------------------------


def test_redocly_finds_nothing_but_the_listed_exceptions(tmp_path: Path) -> None:
    import json
    import os
    import subprocess

    from tests.support import ROOT

    redocly = ROOT / "tools" / "node" / "node_modules" / ".bin" / "redocly"
    if not redocly.exists():
        pytest.skip("Redocly CLI not installed (make installs it: tools/node)")
    document = json.loads(json.dumps(_document()))
    del document["paths"]["/v1/sessions"]["get"]["responses"]["4XX"]  # one problem on purpose
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    done = subprocess.run(
        [str(redocly), "lint", "--config", str(ROOT / "redocly.yaml"), "--format=json", "openapi.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
        check=False,
    )
    assert done.returncode != 0
    report = json.loads(done.stdout[done.stdout.index("{") :])
    problems = {(p["ruleId"], p["location"][0]["pointer"]) for p in report["problems"]}
    # The probes (ignored in .redocly.lint-ignore.yaml for build/openapi.json) and the one made here.
    assert problems == {
        ("operation-4xx-response", "#/paths/~1healthz/get/responses"),
        ("operation-4xx-response", "#/paths/~1readyz/get/responses"),
        ("operation-4xx-response", "#/paths/~1v1~1sessions/get/responses"),
    }


# --- 6. the API reference at /docs ---------------------------------------------------

_NO_BACKENDS = {
    p: "127.0.0.1:1"
    for p in ("flowpilot.settings.v1", "flowpilot.sessions.v1", "flowpilot.library.v1", "flowpilot.walks.v1")
}


async def test_docs_page_renders_the_operations_in_headless_chromium(tmp_path: Path) -> None:
    import asyncio
    import shutil

    from gateway import app
    from tests.gateway.harness import serve_gateway

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium not installed: apt-get install chromium (.ci/run does)"
    assert app.REDOC_BUNDLE.is_file(), "Redoc not bundled: make gateway/static/redoc.standalone.js"
    async with serve_gateway(backends=_NO_BACKENDS) as url:
        process = await asyncio.create_subprocess_exec(
            chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
            "--virtual-time-budget=20000", "--dump-dom", f"{url}/docs",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 120)
    page = out.decode()
    # Redoc rendered the document (it was fetched and read in the browser): one section per operation.
    assert 'data-section-id="operation/SessionsService_ResolveSession"' in page, page[:2000]
    assert "Marks an active session resolved." in page
    operations = sum(len(methods) for methods in _document()["paths"].values())
    assert page.count('data-section-id="operation/') == operations


async def test_docs_page_loads_nothing_from_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from gateway import app
    from gateway.config import GatewayConfig

    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.create_app(GatewayConfig(), backends=_NO_BACKENDS)),
        base_url="http://gateway",
    )
    async with client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "http" not in page.text.lower().replace("http-equiv", "")  # no absolute URL, no CDN
        bundle = await client.get("/docs/redoc.standalone.js")
        assert bundle.status_code == 200 and bundle.headers["content-type"].startswith("text/javascript")
        monkeypatch.setattr(app, "REDOC_BUNDLE", Path("/nonexistent/redoc.standalone.js"))
        missing = await client.get("/docs")
        assert missing.status_code == 404 and missing.json()["details"][0]["reason"] == "DOCS_NOT_BUILT"


def test_setting_values_are_typed() -> None:
    from gateway.openapi import document
    from gateway.routes import compile_routes, discover_services

    components = document(compile_routes(discover_services()))["components"]["schemas"]
    value = components["flowpilot.settings.v1.Setting"]["properties"]["value"]
    resolved = components[value["$ref"].rsplit("/", 1)[-1]] if "$ref" in value else value
    assert {option["type"] for option in resolved["oneOf"]} == {"string", "boolean", "integer"}
