"""Drafts never hold credentials, templates are never made with one (unless a
team_admin says so), and render never logs a value: through real gRPC, and
the rules without it."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import grpc
import pytest
from flowpilot.library.v1 import library_pb2 as pb
from google.protobuf import field_mask_pb2, json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.auth import Principal, Role, ServiceCredential
from services.core.errors import InvalidArgument, PermissionDenied
from services.library import credentials
from tests.library.helpers import Librarian, draft_rows
from tests.support import AUDIENCE, Keys, RunDatabase

NET_USE = r"net use Z: \\fs01\share /user:CONTOSO\svc-backup password=Sup3rS3cret!"
SECRET = "Sup3rS3cret!"


@pytest.fixture
def lib(library_channel: grpc.aio.Channel, keys: Keys) -> Librarian:
    return Librarian(library_channel, keys, role=Role.TEAM_ADMIN)


def _json(message: Any) -> str:
    return json_format.MessageToJson(message)


async def _import(
    lib: Librarian, service_keys: dict[str, Keys], *scripts: tuple[str, str]
) -> list[pb.DraftTemplate]:
    session = uuid.uuid4()
    request = pb.ImportSessionScriptsRequest(
        session=f"sessions/{session}",
        resolved_by=str(lib.user),
        ticket_ref="CW #48213",
        scripts=[
            pb.SessionScript(
                lane_item=f"sessions/{session}/laneItems/{item}",
                script_body=body,
                language=pb.LANGUAGE_CMD,
                title="Map the backup share",
            )
            for item, body in scripts
        ],
    )
    credential = ServiceCredential(
        service="sessions", private_key=service_keys["sessions"].private_pem, audience=AUDIENCE
    )
    return list((await lib.import_scripts(credential, request)).draft_templates)


def _bad_request(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    reason, fields = "", {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = {v.field: v.description for v in bad.field_violations}
    return reason, fields


# --- drafts ----------------------------------------------------------------------


async def test_an_imported_script_becomes_a_draft_with_a_secret_parameter(
    lib: Librarian, service_keys: dict[str, Keys], database: RunDatabase
) -> None:
    (draft,) = await _import(lib, service_keys, ("a1", NET_USE))
    assert draft.script_body == r"net use Z: \\fs01\share /user:CONTOSO\svc-backup password={{password}}"
    assert list(draft.parameters) == [
        pb.Parameter(
            name="password",
            description="Replaces the password found in the script",
            required=True,
            secret=True,
        )
    ]
    assert list(draft.redactions) == [pb.Redaction(parameter="password", kind="password", line=1)]
    assert SECRET not in _json(draft)
    # Nothing of it is stored either.
    (row,) = await draft_rows(database, lib.account)
    assert SECRET not in repr(tuple(row))
    got = await lib.call("GetDraftTemplate", pb.GetDraftTemplateRequest(name=draft.name))
    assert SECRET not in _json(got)


async def test_approving_without_templatizing_publishes_no_credential(
    lib: Librarian, service_keys: dict[str, Keys], caplog: pytest.LogCaptureFixture
) -> None:
    (draft,) = await _import(lib, service_keys, ("a1", NET_USE))
    approved = await lib.call(
        "ApproveDraftTemplate",
        pb.ApproveDraftTemplateRequest(name=draft.name, display_name="Map backup share"),
    )
    template = approved.script_template
    assert SECRET not in _json(approved)
    assert "{{password}}" in template.body
    assert [(p.name, p.secret, p.default) for p in template.parameters] == [("password", True, "")]
    # The value is given at render time, and only the answer holds it.
    caplog.set_level(logging.DEBUG)
    rendered = await lib.call(
        "RenderScriptTemplate",
        pb.RenderScriptTemplateRequest(name=template.name, values={"password": "N3w!Rotated"}),
    )
    assert rendered.body.endswith("password=N3w!Rotated")
    assert "N3w!Rotated" not in caplog.text


async def test_templatizing_keeps_the_secret_parameters_secret(
    lib: Librarian, service_keys: dict[str, Keys]
) -> None:
    (draft,) = await _import(lib, service_keys, ("a1", NET_USE))
    templatized = await lib.call(
        "TemplatizeDraftTemplate", pb.TemplatizeDraftTemplateRequest(name=draft.name)
    )
    assert "{{password}}" in templatized.templatized_body
    secret = {p.name: (p.secret, p.default) for p in templatized.parameters}
    assert secret["password"] == (True, "")
    assert SECRET not in _json(templatized)
    approved = await lib.call("ApproveDraftTemplate", pb.ApproveDraftTemplateRequest(name=draft.name))
    assert SECRET not in _json(approved)
    assert {p.name for p in approved.script_template.parameters if p.secret} == {"password"}


async def test_a_draft_by_hand_names_each_secret_once(lib: Librarian) -> None:
    body = "\n".join(
        [
            "# {{password}} is the share's, below",
            "$pw = 'Autumn#2026'",
            "cmdkey /add:fs01 /user:CONTOSO\\svc /pass:Autumn#2026",
            "aws configure set aws_access_key_id AKIA4QX7Z2WJ8KDL3MPN",
            "psexec \\\\ws-042 -u admin -p P@ssPsexec1 cmd",
        ]
    )
    draft = await lib.draft(body, suggested_name="Setup with password Winter2024!Pw")
    assert [(r.parameter, r.kind, r.line) for r in draft.redactions] == [
        ("password_2", "password", 2),
        ("password_2", "password", 3),
        ("aws_access_key_id", "aws_access_key", 4),
        ("password_3", "password", 5),
    ]
    assert [(p.name, p.secret) for p in draft.parameters] == [
        ("password_2", True),
        ("aws_access_key_id", True),
        ("password_3", True),
    ]
    for secret in ("Autumn#2026", "AKIA4QX7Z2WJ8KDL3MPN", "P@ssPsexec1", "Winter2024!Pw"):
        assert secret not in _json(draft)
    assert draft.script_body.splitlines()[1] == "$pw = '{{password_2}}'"


async def test_a_draft_stored_before_redaction_is_secured_when_approved(
    lib: Librarian, database: RunDatabase
) -> None:
    """A pending draft written before library_0005 (its script in clear):
    approving it still publishes no credential."""
    draft = await lib.draft("Get-Service spooler")
    engine = create_async_engine(database.runtime_url("library"))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_account_id', :a, true)"), {"a": str(lib.account)}
            )
            await conn.execute(
                text("UPDATE library.draft_templates SET script_body = :b, redactions = '[]' WHERE id = :id"),
                {"b": NET_USE, "id": draft.name.removeprefix("draftTemplates/")},
            )
    finally:
        await engine.dispose()
    approved = await lib.call(
        "ApproveDraftTemplate", pb.ApproveDraftTemplateRequest(name=draft.name, display_name="Old")
    )
    assert SECRET not in _json(approved.script_template)
    assert [(r.parameter, r.kind) for r in approved.draft_template.redactions] == [("password", "password")]


# --- templates -------------------------------------------------------------------


async def test_a_template_with_a_secret_is_refused_naming_kind_and_line(lib: Librarian) -> None:
    body = "Restart-Service {{service}}\n" + NET_USE
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await lib.template("Map share", body)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    reason, fields = _bad_request(refused.value)
    assert reason == "SECRET_DETECTED"
    assert "password on line 2" in fields["script_template.body"]
    assert SECRET not in str(refused.value.details()) and SECRET not in repr(fields)


async def test_a_team_admin_may_keep_a_detected_secret(lib: Librarian) -> None:
    message = pb.ScriptTemplate(display_name="Lab share", body=NET_USE, language=pb.LANGUAGE_CMD)
    made = await lib.call(
        "CreateScriptTemplate",
        pb.CreateScriptTemplateRequest(script_template=message, allow_detected_secrets=True),
    )
    assert made.body == NET_USE
    # A change of body or parameters is checked again; other changes are not.
    retagged = await lib.call(
        "UpdateScriptTemplate",
        pb.UpdateScriptTemplateRequest(
            script_template=pb.ScriptTemplate(name=made.name, tags=["lab"]),
            update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
        ),
    )
    assert list(retagged.tags) == ["lab"]
    changed = pb.ScriptTemplate(name=made.name, body=NET_USE + "\nPIN 4821")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await lib.call(
            "UpdateScriptTemplate",
            pb.UpdateScriptTemplateRequest(
                script_template=changed, update_mask=field_mask_pb2.FieldMask(paths=["body"])
            ),
        )
    assert _bad_request(refused.value)[0] == "SECRET_DETECTED"
    assert "pin on line 2" in _bad_request(refused.value)[1]["script_template.body"]
    kept = await lib.call(
        "UpdateScriptTemplate",
        pb.UpdateScriptTemplateRequest(
            script_template=changed,
            update_mask=field_mask_pb2.FieldMask(paths=["body"]),
            allow_detected_secrets=True,
        ),
    )
    assert kept.body.endswith("PIN 4821")


async def test_the_override_is_a_team_admins_only(lib: Librarian) -> None:
    message = pb.ScriptTemplate(display_name="Lab share", body=NET_USE, language=pb.LANGUAGE_CMD)
    request = pb.CreateScriptTemplateRequest(script_template=message, allow_detected_secrets=True)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await lib.as_role(Role.ENGINEER).call("CreateScriptTemplate", request)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    made = await lib.as_role(Role.SUPER_ADMIN).call("CreateScriptTemplate", request)
    assert made.body == NET_USE


async def test_secret_parameters_have_no_default_and_defaults_hold_no_secret(lib: Librarian) -> None:
    body = r"net use Z: \\fs01\share /user:CONTOSO\svc {{password}}"
    cases = [
        pb.Parameter(name="password", secret=True, default="Sup3rS3cret!"),
        pb.Parameter(name="password", default="Sup3rS3cret!"),
    ]
    for parameter in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await lib.template(f"Map {uuid.uuid4()}", body, parameters=[parameter], language=pb.LANGUAGE_CMD)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "script_template.parameters[0].default" in _bad_request(refused.value)[1]
        assert SECRET not in str(refused.value.details())
    # Declared as it should be: accepted, and marked.
    made = await lib.template(
        "Map share", body, parameters=[pb.Parameter(name="password", secret=True)], language=pb.LANGUAGE_CMD
    )
    assert [(p.name, p.secret) for p in made.parameters] == [("password", True)]


# --- rules -------------------------------------------------------------------------


def _principal(role: Role) -> Principal:
    return Principal(user_id=uuid.uuid4(), account_id=uuid.uuid4(), role=role, token="")


def test_secure_keeps_placeholders_and_declared_names() -> None:
    body = "$p = '{{password}}'\nmysql -u root -pR00tPw!x -h db\nrunas /user:admin cmd"
    secured = credentials.secure(body, [{"name": "password", "secret": True}])
    assert secured.body == "$p = '{{password}}'\nmysql -u root -p{{password_2}} -h db\nrunas /user:admin cmd"
    assert secured.redactions == [{"parameter": "password_2", "kind": "password", "line": 2}]
    assert credentials.secure("Restart-Service Spooler").redactions == []


def test_keep_secret_after_a_model_renamed_or_dropped_parameters() -> None:
    before = [{"name": "password", "secret": True, "default": "", "required": True, "description": ""}]
    model = [{"name": "password", "secret": False, "default": "guess", "required": True, "description": "x"}]
    kept = credentials.keep_secret("x {{password}}", model, before)
    assert kept[0]["secret"] is True and kept[0]["default"] == ""
    assert credentials.keep_secret("x {{password}}", [], before)[0]["name"] == "password"
    assert credentials.keep_secret("no placeholder", [], before) == []


def test_check_template_rules() -> None:
    admin, engineer = _principal(Role.TEAM_ADMIN), _principal(Role.ENGINEER)
    credentials.check_template(admin, "Restart-Service {{name}}", [{"name": "name"}], prefix="t", allow=False)
    with pytest.raises(InvalidArgument) as refused:
        credentials.check_template(admin, "x\nPIN 4821", [], prefix="t", allow=False)
    assert refused.value.reason == "SECRET_DETECTED"
    assert (
        refused.value.violations[0].field == "t.body"
        and "pin on line 2" in refused.value.violations[0].description
    )
    credentials.check_template(admin, "x\nPIN 4821", [], prefix="t", allow=True)
    with pytest.raises(PermissionDenied):
        credentials.check_template(engineer, "x\nPIN 4821", [], prefix="t", allow=True)
    with pytest.raises(InvalidArgument):  # even with the override
        credentials.check_template(
            admin, "{{p}}", [{"name": "p", "secret": True, "default": "x"}], prefix="t", allow=True
        )
