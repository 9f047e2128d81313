"""gRPC surface of the library service: decode, apply the rules, encode."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeAlias

import grpc
from flowpilot.library.v1 import library_pb2 as pb
from flowpilot.library.v1 import library_pb2_grpc
from google.protobuf.empty_pb2 import Empty
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError

from services.core import ids, names, pagination, requests, validation
from services.core.ai import AI, ScriptDraft
from services.core.auth import current_principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    not_found,
)
from services.core.rpc import created
from services.library import convert, provenance, search, storage, templates
from services.library.convert import LANE_ITEM

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

UPDATABLE = {"display_name", "description", "body", "parameters", "tags", "language"}
COLUMNS = {"display_name": "name"}


def _name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(
        f"a template named {name!r} already exists",
        reason="TEMPLATE_NAME_TAKEN",
        metadata={"display_name": name},
    )


class LibraryServicer(library_pb2_grpc.LibraryServiceServicer):
    def __init__(self, db: Database, ai: AI, settings: SettingsReader) -> None:
        self._db = db
        self._ai = ai
        self._settings = settings

    # --- templates ----------------------------------------------------------------

    def _template_values(self, given: pb.ScriptTemplate, paths: set[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "display_name" in paths:
            values["name"] = validation.nonblank(given.display_name, "script_template.display_name")
        if "description" in paths:
            values["description"] = given.description
        if "language" in paths:
            values["language"] = convert.language(given.language, "script_template.language")
        if "body" in paths:
            validation.nonblank(given.body, "script_template.body")
            values["body"] = given.body
        if "tags" in paths:
            values["tags"] = templates.check_tags(given.tags, field="script_template.tags")
        return values

    async def CreateScriptTemplate(
        self, request: pb.CreateScriptTemplateRequest, context: Context
    ) -> pb.ScriptTemplate:
        principal = current_principal()
        given = request.script_template
        values = self._template_values(given, UPDATABLE)
        values["parameters"] = templates.check_parameters(
            given.body, given.parameters, prefix="script_template"
        )
        try:
            async with self._db.transaction() as conn:
                row = await storage.insert_template(
                    conn,
                    account_id=principal.account_id,
                    id=uuid.uuid4(),
                    created_by=principal.user_id,
                    **values,
                )
        except IntegrityError as exc:
            raise _name_taken(values["name"]) from exc
        template = convert.template(row)
        created(template.name)
        return template

    async def _template(self, conn: Any, name: str, *, lock: bool = False, field: str = "name") -> Any:
        row = await storage.get_template(conn, convert.template_id(name, field), lock=lock)
        if row is None:
            raise not_found("script template", name)
        return row

    async def GetScriptTemplate(
        self, request: pb.GetScriptTemplateRequest, context: Context
    ) -> pb.ScriptTemplate:
        async with self._db.transaction() as conn:
            return convert.template(await self._template(conn, request.name))

    async def ListScriptTemplates(
        self, request: pb.ListScriptTemplatesRequest, context: Context
    ) -> pb.ListScriptTemplatesResponse:
        limit = pagination.page_size(request.page_size)
        searched = search.parse(request.query)
        language = convert.language(request.language, "language") if request.language else None
        order = {
            pb.TEMPLATE_ORDER_USAGE: "usage",
            pb.TEMPLATE_ORDER_RECENCY: "recency",
        }.get(request.order_by, "relevance" if searched is not None else "recency")
        fingerprint = pagination.fingerprint(
            current_principal().account_id,
            {"q": request.query.strip() or None, "tag": request.tag, "language": language, "order": order},
        )
        sort_key: dict[str, Callable[[str], Any]] = {
            "relevance": float,
            "usage": int,
            "recency": datetime.fromisoformat,
        }
        position = pagination.keyset_after(
            request.page_token, query_fingerprint=fingerprint, first=sort_key[order]
        )
        async with self._db.transaction() as conn:
            rows = list(
                await storage.list_templates(
                    conn, search=searched, tag=request.tag.strip().lower() or None, language=language,
                    order=order, after=position, limit=limit + 1,
                )
            )  # fmt: skip
        token = pagination.next_page_token(
            rows,
            limit,
            query_fingerprint=fingerprint,
            key=lambda last: {
                "relevance": last.rank,
                "usage": last.usage_count,
                "recency": last.create_time.isoformat(),
            }[order],
        )
        return pb.ListScriptTemplatesResponse(
            script_templates=[convert.template(r) for r in rows[:limit]], next_page_token=token
        )

    async def UpdateScriptTemplate(
        self, request: pb.UpdateScriptTemplateRequest, context: Context
    ) -> pb.ScriptTemplate:
        given = request.script_template
        paths = validation.update_paths(
            given, request.update_mask.paths, allowed=UPDATABLE, default=UPDATABLE, prefix="script_template"
        )
        values = self._template_values(given, paths)
        expected = ids.parse_etag(given.etag, field="script_template.etag")
        try:
            async with self._db.transaction() as conn:
                row = await self._template(conn, given.name, lock=True, field="script_template.name")
                if expected is not None and expected != row.revision:
                    raise Aborted("template changed since it was read; read it again", reason="ETAG_MISMATCH")
                body = values.get("body", row.body)
                if "parameters" in paths or "body" in paths:
                    params = given.parameters if "parameters" in paths else convert.parameters(row.parameters)
                    values["parameters"] = templates.check_parameters(body, params, prefix="script_template")
                row = await storage.update_template(conn, row.id, **values)
        except IntegrityError as exc:
            raise _name_taken(values.get("name", "")) from exc
        return convert.template(row)

    async def DeleteScriptTemplate(self, request: pb.DeleteScriptTemplateRequest, context: Context) -> Empty:
        async with self._db.transaction() as conn:
            if not await storage.delete_template(conn, convert.template_id(request.name)):
                raise not_found("script template", request.name)
        return Empty()

    async def RecordTemplateUse(
        self, request: pb.RecordTemplateUseRequest, context: Context
    ) -> pb.RecordTemplateUseResponse:
        async with self._db.transaction() as conn:
            count = await storage.record_use(conn, convert.template_id(request.name))
        if count is None:
            raise not_found("script template", request.name)
        return pb.RecordTemplateUseResponse(usage_count=count)

    async def RenderScriptTemplate(
        self, request: pb.RenderScriptTemplateRequest, context: Context
    ) -> pb.RenderScriptTemplateResponse:
        async with self._db.transaction() as conn:
            row = await self._template(conn, request.name)
        return pb.RenderScriptTemplateResponse(
            body=templates.render(row.body, row.parameters, dict(request.values))
        )

    # --- drafts ---------------------------------------------------------------------

    async def CreateDraftTemplate(
        self, request: pb.CreateDraftTemplateRequest, context: Context
    ) -> pb.DraftTemplate:
        given = request.draft_template
        validation.nonblank(given.script_body, "draft_template.script_body")
        language = convert.language(given.language, "draft_template.language")
        request_id = (
            convert.parse_uuid(request.request_id, field="request_id", what="UUID")
            if request.request_id
            else None
        )
        # `provenance` is output only: the caller is the source, nothing else.
        source = provenance.by_hand(current_principal())
        fingerprint = requests.fingerprint(current_principal(), request)
        async with self._db.transaction() as conn:
            row = await storage.insert_draft(
                conn,
                id=uuid.uuid4(),
                script_body=given.script_body,
                language=language,
                suggested_name=given.suggested_name.strip(),
                request_id=request_id,
                request_fingerprint=fingerprint if request_id is not None else None,
                **source.columns(),
            )
            if row is not None:
                draft = convert.draft(row)
                created(draft.name)
                return draft
            if request_id is not None:  # a repeat of the same request id
                row = await storage.draft_by_request(conn, request_id)
                if row is not None:
                    requests.check_replay(row.request_fingerprint, fingerprint)
            if row is None:
                raise Aborted("a concurrent create conflicted; retry", reason="CONCURRENT_CREATE")
        return convert.draft(row)

    async def _draft(self, conn: Any, name: str, *, lock: bool = False) -> Any:
        row = await storage.get_draft(conn, convert.draft_id(name), lock=lock)
        if row is None:
            raise not_found("draft template", name)
        return row

    async def GetDraftTemplate(
        self, request: pb.GetDraftTemplateRequest, context: Context
    ) -> pb.DraftTemplate:
        async with self._db.transaction() as conn:
            return convert.draft(await self._draft(conn, request.name))

    async def ListDraftTemplates(
        self, request: pb.ListDraftTemplatesRequest, context: Context
    ) -> pb.ListDraftTemplatesResponse:
        limit = pagination.page_size(request.page_size)
        status = convert.DRAFT_STATUS_NAMES.get(request.status) if request.status else None
        fingerprint = pagination.fingerprint(current_principal().account_id, {"drafts": status})
        position = pagination.keyset_after(
            request.page_token, query_fingerprint=fingerprint, first=datetime.fromisoformat
        )
        async with self._db.transaction() as conn:
            rows = list(await storage.list_drafts(conn, status=status, after=position, limit=limit + 1))
        token = pagination.next_page_token(
            rows, limit, query_fingerprint=fingerprint, key=lambda r: r.create_time.isoformat()
        )
        return pb.ListDraftTemplatesResponse(
            draft_templates=[convert.draft(r) for r in rows[:limit]], next_page_token=token
        )

    async def CountPendingDrafts(
        self, request: pb.CountPendingDraftsRequest, context: Context
    ) -> pb.CountPendingDraftsResponse:
        async with self._db.transaction() as conn:
            return pb.CountPendingDraftsResponse(count=await storage.count_pending(conn))

    @staticmethod
    def _pending(row: Any) -> None:
        if row.status != "pending":
            raise FailedPrecondition(
                f"draft is {row.status}; only pending drafts can be reviewed", reason="DRAFT_NOT_PENDING"
            )

    async def TemplatizeDraftTemplate(
        self, request: pb.TemplatizeDraftTemplateRequest, context: Context
    ) -> pb.DraftTemplate:
        async with self._db.transaction() as conn:
            row = await self._draft(conn, request.name)
            self._pending(row)
        prefs = await self._settings.preferences()
        result = await self._ai.templatize_script(
            ScriptDraft(body=row.script_body, language=row.language, name_hint=row.suggested_name), prefs
        )
        params = [
            {"name": p.name, "description": p.description, "required": p.required, "default": p.default}
            for p in result.parameters
        ]
        async with self._db.transaction() as conn:
            row = await self._draft(conn, request.name, lock=True)
            self._pending(row)
            row = await storage.update_draft(
                conn,
                row.id,
                templatized_body=result.body,
                parameters=params,
                suggested_name=row.suggested_name or result.name,
            )
        return convert.draft(row)

    async def ApproveDraftTemplate(
        self, request: pb.ApproveDraftTemplateRequest, context: Context
    ) -> pb.ApproveDraftTemplateResponse:
        principal = current_principal()
        tags = templates.check_tags(request.tags, field="tags")
        try:
            async with self._db.transaction() as conn:
                draft = await self._draft(conn, request.name, lock=True)
                self._pending(draft)
                display_name = (request.display_name or draft.suggested_name or "").strip()
                if not display_name:
                    raise InvalidArgument(
                        FieldViolation("display_name", "is required: the draft has no suggested name")
                    )
                body = draft.templatized_body or draft.script_body
                params = convert.parameters(draft.parameters)
                checked = templates.check_parameters(body, params, prefix="draft_template")
                template = await storage.insert_template(
                    conn,
                    account_id=principal.account_id,
                    id=uuid.uuid4(),
                    name=display_name,
                    description=request.description,
                    language=draft.language,
                    body=body,
                    parameters=checked,
                    tags=tags,
                    source_session_id=draft.source_session_id,
                    source_user_id=draft.source_user_id,
                    source_ticket_ref=draft.source_ticket_ref,
                    created_by=principal.user_id,
                )
                draft = await storage.update_draft(
                    conn, draft.id, status="approved", template_id=template.id, reviewer_id=principal.user_id,
                    review_time=template.create_time,
                )  # fmt: skip
        except IntegrityError as exc:
            raise _name_taken(display_name) from exc
        return pb.ApproveDraftTemplateResponse(
            draft_template=convert.draft(draft), script_template=convert.template(template)
        )

    async def RejectDraftTemplate(
        self, request: pb.RejectDraftTemplateRequest, context: Context
    ) -> pb.DraftTemplate:
        principal = current_principal()
        async with self._db.transaction() as conn:
            draft = await self._draft(conn, request.name, lock=True)
            self._pending(draft)
            draft = await storage.update_draft(
                conn, draft.id, status="rejected", reviewer_id=principal.user_id, review_note=request.note,
                review_time=func.now(),
            )  # fmt: skip
        return convert.draft(draft)

    # --- internal -------------------------------------------------------------------

    async def ImportSessionScripts(
        self, request: pb.ImportSessionScriptsRequest, context: Context
    ) -> pb.ImportSessionScriptsResponse:
        session_id, source = provenance.from_session(
            current_principal(),
            session=request.session,
            resolved_by=request.resolved_by,
            ticket_ref=request.ticket_ref,
        )
        rows_in: list[dict[str, Any]] = []
        for index, script in enumerate(request.scripts):
            field = f"scripts[{index}]"
            parts = names.parse(script.lane_item, LANE_ITEM, field=f"{field}.lane_item")
            if parts["session"] != str(session_id):
                raise InvalidArgument(FieldViolation(f"{field}.lane_item", "must belong to the session"))
            rows_in.append(
                {
                    "script_body": script.script_body,
                    "language": convert.language(script.language, f"{field}.language"),
                    "suggested_name": script.title.strip(),
                    "source_lane_item_id": parts["lane_item"],
                }
            )
        async with self._db.transaction() as conn:
            for values in rows_in:
                await storage.insert_draft(conn, id=uuid.uuid4(), **source.columns(), **values)
            rows = {r.source_lane_item_id: r for r in await storage.drafts_of_session(conn, session_id)}
        # In the order the scripts were given.
        ordered = [rows[v["source_lane_item_id"]] for v in rows_in if v["source_lane_item_id"] in rows]
        return pb.ImportSessionScriptsResponse(draft_templates=[convert.draft(r) for r in ordered])
