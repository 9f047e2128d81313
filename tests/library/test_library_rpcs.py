"""Library RPCs over a real channel against real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from flowpilot.library.v1 import library_pb2 as pb
from google.protobuf import field_mask_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.auth import Role, ServiceCredential
from tests.library.helpers import Librarian, session_scripts
from tests.support import AUDIENCE, Keys, RunDatabase
from tests.support import expect_error as _fails


@pytest.fixture
def lib(library_channel: grpc.aio.Channel, keys: Keys) -> Librarian:
    return Librarian(library_channel, keys)


@pytest.fixture
def sessions_service(service_keys: dict[str, Keys]) -> ServiceCredential:
    return ServiceCredential(
        service="sessions", private_key=service_keys["sessions"].private_pem, audience=AUDIENCE
    )


async def test_template_crud(lib: Librarian) -> None:
    created = await lib.template(
        description="Restarts a Windows service", tags=["Windows", "services", "windows"]
    )
    assert created.name.startswith("scriptTemplates/")
    assert list(created.tags) == ["windows", "services"]
    assert created.usage_count == 0 and created.provenance_summary == "used 0 times"
    got = await lib.call("GetScriptTemplate", pb.GetScriptTemplateRequest(name=created.name))
    assert got == created
    updated = await lib.call(
        "UpdateScriptTemplate",
        pb.UpdateScriptTemplateRequest(
            script_template=pb.ScriptTemplate(
                name=created.name, description="Restart any service", etag=created.etag
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
    )
    assert updated.description == "Restart any service" and updated.body == created.body
    await _fails(
        lib.call(
            "UpdateScriptTemplate",
            pb.UpdateScriptTemplateRequest(
                script_template=pb.ScriptTemplate(name=created.name, description="stale", etag=created.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            ),
        ),
        grpc.StatusCode.ABORTED,
    )
    await _fails(
        lib.call(
            "UpdateScriptTemplate",
            pb.UpdateScriptTemplateRequest(
                script_template=pb.ScriptTemplate(name=created.name, body="echo {{nope}}"),
                update_mask=field_mask_pb2.FieldMask(paths=["body"]),
            ),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="script_template.body",
    )
    await lib.call("DeleteScriptTemplate", pb.DeleteScriptTemplateRequest(name=created.name))
    await _fails(
        lib.call("GetScriptTemplate", pb.GetScriptTemplateRequest(name=created.name)),
        grpc.StatusCode.NOT_FOUND,
    )
    await _fails(
        lib.call("DeleteScriptTemplate", pb.DeleteScriptTemplateRequest(name=created.name)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_template_validation(lib: Librarian) -> None:
    await lib.template("Unique name")
    await _fails(lib.template("UNIQUE NAME"), grpc.StatusCode.ALREADY_EXISTS, reason="TEMPLATE_NAME_TAKEN")
    await _fails(
        lib.template("x", body="echo {{who}}", parameters=[]),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="script_template.body",
    )
    await _fails(
        lib.template("y", body="echo", parameters=[pb.Parameter(name="1bad")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="script_template.parameters[0].name",
    )
    await _fails(
        lib.template("z", body="x" * 65537), grpc.StatusCode.INVALID_ARGUMENT, field="script_template.body"
    )
    await _fails(
        lib.template("w", tags=[f"t{i}" for i in range(21)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="script_template.tags",
    )
    await _fails(
        lib.template("v", language=pb.LANGUAGE_UNSPECIFIED),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="script_template.language",
    )
    listed = await lib.call("ListScriptTemplates", pb.ListScriptTemplatesRequest())
    assert [t.display_name for t in listed.script_templates] == ["Unique name"]
    # An enum value no version of the API has is refused, filters included (it was ignored).
    error = await _fails(
        lib.call("ListDraftTemplates", pb.ListDraftTemplatesRequest(status=99)),  # type: ignore[arg-type]
        grpc.StatusCode.INVALID_ARGUMENT,
        field="status",
    )
    assert "DRAFT_STATUS_PENDING" in error.violations["status"], error
    await _fails(
        lib.call("ListScriptTemplates", pb.ListScriptTemplatesRequest(language=42)),  # type: ignore[arg-type]
        grpc.StatusCode.INVALID_ARGUMENT,
        field="language",
    )


async def test_search_ranks_name_matches_first_and_filters_combine(lib: Librarian) -> None:
    await lib.template("Clear print queue", body="Stop-Service spooler; Remove-Item queue", tags=["printing"])
    await lib.template(
        "Reset network adapter", body="# also helps a stuck spooler sometimes", tags=["network"]
    )
    await lib.template(
        "Spooler restart",
        body="Restart-Service spooler",
        tags=["printing"],
        language=pb.LANGUAGE_CMD,
        parameters=[],
    )
    ranked = await lib.call("ListScriptTemplates", pb.ListScriptTemplatesRequest(query="spooler"))
    names = [t.display_name for t in ranked.script_templates]
    assert names[0] == "Spooler restart"
    assert set(names) == {"Spooler restart", "Clear print queue", "Reset network adapter"}
    filtered = await lib.call(
        "ListScriptTemplates",
        pb.ListScriptTemplatesRequest(query="spooler", tag="printing", language=pb.LANGUAGE_POWERSHELL),
    )
    assert [t.display_name for t in filtered.script_templates] == ["Clear print queue"]
    none = await lib.call("ListScriptTemplates", pb.ListScriptTemplatesRequest(query="kerberos"))
    assert list(none.script_templates) == []


async def test_pagination_is_stable_while_templates_are_added(lib: Librarian) -> None:
    for i in range(7):
        await lib.template(f"Template {i}", body=f"echo {i}", parameters=[])
    seen: list[str] = []
    token = ""
    added = 0
    while True:
        page = await lib.call(
            "ListScriptTemplates",
            pb.ListScriptTemplatesRequest(page_size=3, page_token=token, order_by=pb.TEMPLATE_ORDER_RECENCY),
        )
        seen += [t.display_name for t in page.script_templates]
        await lib.template(f"Added {added}", body="echo new", parameters=[])  # newer: sorts before the cursor
        added += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"Template {i}" for i in reversed(range(7))]


async def test_record_use_never_loses_an_increment(lib: Librarian) -> None:
    template = await lib.template("Counted", body="echo", parameters=[])
    engineer = lib.as_role(Role.ENGINEER)
    results = await asyncio.gather(
        *(
            engineer.call("RecordTemplateUse", pb.RecordTemplateUseRequest(name=template.name))
            for _ in range(30)
        )
    )
    assert sorted(r.usage_count for r in results) == list(range(1, 31))
    got = await lib.call("GetScriptTemplate", pb.GetScriptTemplateRequest(name=template.name))
    assert (
        got.usage_count == 30 and got.provenance_summary == "used 30 times" and got.HasField("last_use_time")
    )


async def test_render(lib: Librarian) -> None:
    template = await lib.template(
        "Map drive",
        body="net use {{letter}}: \\\\{{server}}\\{{share}}",
        parameters=[
            pb.Parameter(name="letter", default="Z"),
            pb.Parameter(name="server", required=True),
            pb.Parameter(name="share", required=True),
        ],
    )
    rendered = await lib.call(
        "RenderScriptTemplate",
        pb.RenderScriptTemplateRequest(name=template.name, values={"server": "fs01", "share": "finance"}),
    )
    assert rendered.body == "net use Z: \\\\fs01\\finance"
    await _fails(
        lib.call(
            "RenderScriptTemplate",
            pb.RenderScriptTemplateRequest(name=template.name, values={"server": "fs01"}),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="values[share]",
    )
    await _fails(
        lib.call(
            "RenderScriptTemplate",
            pb.RenderScriptTemplateRequest(
                name=template.name, values={"server": "a", "share": "b", "extra": "c"}
            ),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="values[extra]",
    )


async def test_drafts_are_idempotent_and_reviewable(
    lib: Librarian, sessions_service: ServiceCredential
) -> None:
    session = uuid.uuid4()
    request = session_scripts(session, "item1", resolved_by=lib.user)
    request.scripts[0].script_body = "Get-Service spooler | Restart-Service"
    request.scripts[0].title = "Restart spooler (draft)"
    (first,) = (await lib.import_scripts(sessions_service, request)).draft_templates
    request.scripts[0].script_body = "different body"
    (again,) = (await lib.import_scripts(sessions_service, request)).draft_templates
    assert again.name == first.name and again.script_body == first.script_body
    request_id = str(uuid.uuid4())
    by_request = await lib.draft("echo 1", request_id=request_id)
    assert (await lib.draft("echo 1", request_id=request_id)).name == by_request.name
    # The same request id for another request is refused (AIP-155), and creates nothing.
    await _fails(
        lib.draft("echo 2", request_id=request_id), grpc.StatusCode.ALREADY_EXISTS, reason="REQUEST_ID_REUSED"
    )
    assert first.provenance.lane_item == f"sessions/{session}/laneItems/item1"
    count = await lib.call("CountPendingDrafts", pb.CountPendingDraftsRequest())
    assert count.count == 2
    templatized = await lib.call(
        "TemplatizeDraftTemplate", pb.TemplatizeDraftTemplateRequest(name=by_request.name)
    )
    assert templatized.templatized_body  # offline templatizer ran
    approved = await lib.call(
        "ApproveDraftTemplate", pb.ApproveDraftTemplateRequest(name=first.name, tags=["printing"])
    )
    assert approved.draft_template.status == pb.DRAFT_STATUS_APPROVED
    template = approved.script_template
    assert approved.draft_template.script_template == template.name
    assert template.display_name == "Restart spooler (draft)"
    assert (
        template.provenance.session == f"sessions/{session}" and template.provenance.ticket_ref == "CW #100"
    )
    assert template.provenance_summary == f"generated from CW #100 · resolved by {lib.user} · used 0 times"
    assert (await lib.call("CountPendingDrafts", pb.CountPendingDraftsRequest())).count == 1
    await _fails(
        lib.call("ApproveDraftTemplate", pb.ApproveDraftTemplateRequest(name=first.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="DRAFT_NOT_PENDING",
    )
    rejected = await lib.call(
        "RejectDraftTemplate", pb.RejectDraftTemplateRequest(name=by_request.name, note="too specific")
    )
    assert rejected.status == pb.DRAFT_STATUS_REJECTED and rejected.review_note == "too specific"
    assert (await lib.call("CountPendingDrafts", pb.CountPendingDraftsRequest())).count == 0
    await _fails(
        lib.call("RejectDraftTemplate", pb.RejectDraftTemplateRequest(name=by_request.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    pending = await lib.call(
        "ListDraftTemplates", pb.ListDraftTemplatesRequest(status=pb.DRAFT_STATUS_PENDING)
    )
    assert list(pending.draft_templates) == []
    everything = await lib.call("ListDraftTemplates", pb.ListDraftTemplatesRequest(page_size=1))
    assert len(everything.draft_templates) == 1 and everything.next_page_token


async def test_approving_into_a_taken_name_keeps_the_draft_pending(lib: Librarian) -> None:
    await lib.template("Flush DNS", body="ipconfig /flushdns", parameters=[])
    draft = await lib.draft("ipconfig /flushdns", suggested_name="flush dns")
    await _fails(
        lib.call("ApproveDraftTemplate", pb.ApproveDraftTemplateRequest(name=draft.name)),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    after = await lib.call("GetDraftTemplate", pb.GetDraftTemplateRequest(name=draft.name))
    assert after.status == pb.DRAFT_STATUS_PENDING and not after.script_template
    assert (await lib.call("CountPendingDrafts", pb.CountPendingDraftsRequest())).count == 1
    renamed = await lib.call(
        "ApproveDraftTemplate",
        pb.ApproveDraftTemplateRequest(name=draft.name, display_name="Flush DNS cache"),
    )
    assert renamed.script_template.display_name == "Flush DNS cache"


async def test_roles(lib: Librarian) -> None:
    draft = await lib.draft("echo hi")
    engineer, viewer = lib.as_role(Role.ENGINEER), lib.as_role(Role.VIEWER)
    await _fails(
        engineer.call("ApproveDraftTemplate", pb.ApproveDraftTemplateRequest(name=draft.name)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await _fails(engineer.template("nope"), grpc.StatusCode.PERMISSION_DENIED)
    await _fails(viewer.draft("echo"), grpc.StatusCode.PERMISSION_DENIED)
    assert (await viewer.call("CountPendingDrafts", pb.CountPendingDraftsRequest())).count == 1


async def test_badge_query_uses_the_partial_index(lib: Librarian, database: RunDatabase) -> None:
    await lib.draft("echo 1")
    engine = create_async_engine(database.runtime_url("library"))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_account_id', :a, true)"), {"a": str(lib.account)}
            )
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(
                (
                    await conn.execute(
                        text("EXPLAIN SELECT count(*) FROM library.draft_templates WHERE status = 'pending'")
                    )
                ).scalars()
            )
    finally:
        await engine.dispose()
    assert "draft_templates_pending" in plan, plan
