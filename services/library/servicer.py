"""gRPC surface of the library service: decode the request, call the domain
(``catalogue``, ``drafts``), encode the reply."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeAlias

import grpc
from flowpilot.library.v1 import library_pb2 as pb
from flowpilot.library.v1 import library_pb2_grpc
from google.protobuf.empty_pb2 import Empty

from services.core import ids, names, pagination, requests, search, validation
from services.core.ai import AI
from services.core.auth import current_principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.errors import FieldViolation, InvalidArgument
from services.core.rpc import created
from services.library import convert, provenance, templates
from services.library.catalogue import Templates
from services.library.convert import LANE_ITEM
from services.library.drafts import Drafts
from services.library.storage import TemplateRow

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

UPDATABLE = {"display_name", "description", "body", "parameters", "tags", "language"}
ORDERS = {pb.TEMPLATE_ORDER_USAGE: "usage", pb.TEMPLATE_ORDER_RECENCY: "recency"}
# A page's position: the sort key of its last template, as it is in the token.
SORT_KEYS: dict[str, Callable[[str], Any]] = {
    "relevance": float,
    "usage": int,
    "recency": datetime.fromisoformat,
}
SORTED_BY: dict[str, Callable[[TemplateRow], object]] = {
    "relevance": lambda row: row.rank,
    "usage": lambda row: row.usage_count,
    "recency": lambda row: row.create_time.isoformat(),
}


def _template_values(given: pb.ScriptTemplate, paths: set[str]) -> dict[str, Any]:
    """The template's columns named by ``paths``, checked."""
    values: dict[str, Any] = {}
    if "display_name" in paths:
        values["name"] = validation.nonblank(given.display_name, "script_template.display_name")
    if "description" in paths:
        values["description"] = given.description
    if "language" in paths:
        values["language"] = convert.LANGUAGE.db(given.language, field="script_template.language")
    if "body" in paths:
        validation.nonblank(given.body, "script_template.body")
        values["body"] = given.body
    if "tags" in paths:
        values["tags"] = templates.check_tags(given.tags, field="script_template.tags")
    return values


def _account() -> uuid.UUID:
    """The caller's account: every domain call names it."""
    return current_principal().account_id


class LibraryServicer(library_pb2_grpc.LibraryServiceServicer):
    def __init__(self, db: Database, ai: AI, settings: SettingsReader) -> None:
        self._templates = Templates(db)
        self._drafts = Drafts(db, ai, settings)

    # --- templates ----------------------------------------------------------------

    async def CreateScriptTemplate(
        self, request: pb.CreateScriptTemplateRequest, context: Context
    ) -> pb.ScriptTemplate:
        given = request.script_template
        values = _template_values(given, UPDATABLE)
        values["parameters"] = templates.check_parameters(
            given.body, given.parameters, prefix="script_template"
        )
        row = await self._templates.create(
            current_principal(), values, allow_detected_secrets=request.allow_detected_secrets
        )
        template = convert.template(row)
        created(template.name)
        return template

    async def GetScriptTemplate(
        self, request: pb.GetScriptTemplateRequest, context: Context
    ) -> pb.ScriptTemplate:
        row = await self._templates.get(_account(), convert.template_id(request.name), request.name)
        return convert.template(row)

    async def ListScriptTemplates(
        self, request: pb.ListScriptTemplatesRequest, context: Context
    ) -> pb.ListScriptTemplatesResponse:
        searched = search.parse(request.query)
        language = convert.LANGUAGE.optional(request.language)
        order = ORDERS.get(request.order_by, "relevance" if searched is not None else "recency")
        paging = pagination.paging(
            request,
            current_principal().account_id,
            {"q": request.query.strip() or None, "tag": request.tag, "language": language, "order": order},
            first=SORT_KEYS[order],
        )
        rows = await self._templates.page(
            _account(),
            search=searched,
            tag=request.tag.strip().lower() or None,
            language=language,
            order=order,
            after=paging.after,
            limit=paging.fetch,
        )
        shown, token = paging.page(rows, key=SORTED_BY[order])
        return pb.ListScriptTemplatesResponse(
            script_templates=[convert.template(r) for r in shown], next_page_token=token
        )

    async def UpdateScriptTemplate(
        self, request: pb.UpdateScriptTemplateRequest, context: Context
    ) -> pb.ScriptTemplate:
        given = request.script_template
        paths = validation.update_paths(
            given, request.update_mask.paths, allowed=UPDATABLE, default=UPDATABLE, prefix="script_template"
        )
        values = _template_values(given, paths)
        expected = ids.parse_etag(given.etag, field="script_template.etag")
        template_id = convert.template_id(given.name, "script_template.name")
        row = await self._templates.update(
            current_principal(),
            template_id,
            given.name,
            values,
            parameters=list(given.parameters) if "parameters" in paths else None,
            expected_revision=expected,
            allow_detected_secrets=request.allow_detected_secrets,
        )
        return convert.template(row)

    async def DeleteScriptTemplate(self, request: pb.DeleteScriptTemplateRequest, context: Context) -> Empty:
        await self._templates.delete(_account(), convert.template_id(request.name), request.name)
        return Empty()

    async def RecordTemplateUse(
        self, request: pb.RecordTemplateUseRequest, context: Context
    ) -> pb.RecordTemplateUseResponse:
        count = await self._templates.record_use(_account(), convert.template_id(request.name), request.name)
        return pb.RecordTemplateUseResponse(usage_count=count)

    async def RenderScriptTemplate(
        self, request: pb.RenderScriptTemplateRequest, context: Context
    ) -> pb.RenderScriptTemplateResponse:
        body = await self._templates.render(
            _account(), convert.template_id(request.name), request.name, dict(request.values)
        )
        return pb.RenderScriptTemplateResponse(body=body)

    # --- drafts ---------------------------------------------------------------------

    async def CreateDraftTemplate(
        self, request: pb.CreateDraftTemplateRequest, context: Context
    ) -> pb.DraftTemplate:
        given = request.draft_template
        validation.nonblank(given.script_body, "draft_template.script_body")
        values = {
            "script_body": given.script_body,
            "language": convert.LANGUAGE.db(given.language, field="draft_template.language"),
            "suggested_name": given.suggested_name.strip(),
        }
        request_id = (
            ids.parse_uuid(request.request_id, field="request_id", what="UUID")
            if request.request_id
            else None
        )
        principal = current_principal()
        # `provenance` is output only: the caller is the source, nothing else.
        row, new = await self._drafts.create(
            principal,
            provenance.by_hand(principal),
            values,
            request_id=request_id,
            fingerprint=requests.fingerprint(principal, request),
        )
        draft = convert.draft(row)
        if new:
            created(draft.name)
        return draft

    async def GetDraftTemplate(
        self, request: pb.GetDraftTemplateRequest, context: Context
    ) -> pb.DraftTemplate:
        return convert.draft(await self._drafts.get(_account(), convert.draft_id(request.name), request.name))

    async def ListDraftTemplates(
        self, request: pb.ListDraftTemplatesRequest, context: Context
    ) -> pb.ListDraftTemplatesResponse:
        status = convert.DRAFT_STATUS.optional(request.status)
        paging = pagination.paging(
            request, current_principal().account_id, {"drafts": status}, first=datetime.fromisoformat
        )
        rows = await self._drafts.page(_account(), status=status, after=paging.after, limit=paging.fetch)
        shown, token = paging.page(rows, key=lambda r: r.create_time.isoformat())
        return pb.ListDraftTemplatesResponse(
            draft_templates=[convert.draft(r) for r in shown], next_page_token=token
        )

    async def CountPendingDrafts(
        self, request: pb.CountPendingDraftsRequest, context: Context
    ) -> pb.CountPendingDraftsResponse:
        return pb.CountPendingDraftsResponse(count=await self._drafts.count_pending(_account()))

    async def TemplatizeDraftTemplate(
        self, request: pb.TemplatizeDraftTemplateRequest, context: Context
    ) -> pb.DraftTemplate:
        return convert.draft(
            await self._drafts.templatize(_account(), convert.draft_id(request.name), request.name)
        )

    async def ApproveDraftTemplate(
        self, request: pb.ApproveDraftTemplateRequest, context: Context
    ) -> pb.ApproveDraftTemplateResponse:
        tags = templates.check_tags(request.tags, field="tags")
        draft, template = await self._drafts.approve(
            current_principal(),
            convert.draft_id(request.name),
            request.name,
            display_name_given=request.display_name,
            description=request.description,
            tags=tags,
        )
        return pb.ApproveDraftTemplateResponse(
            draft_template=convert.draft(draft), script_template=convert.template(template)
        )

    async def RejectDraftTemplate(
        self, request: pb.RejectDraftTemplateRequest, context: Context
    ) -> pb.DraftTemplate:
        row = await self._drafts.reject(
            current_principal(), convert.draft_id(request.name), request.name, request.note
        )
        return convert.draft(row)

    # --- internal -------------------------------------------------------------------

    async def ImportSessionScripts(
        self, request: pb.ImportSessionScriptsRequest, context: Context
    ) -> pb.ImportSessionScriptsResponse:
        session_id, source = provenance.from_session(
            current_principal(),
            session=request.session,
            resolved_by=request.resolved_by,
            resolved_by_name=request.resolved_by_display_name,
            ticket_ref=request.ticket_ref,
        )
        scripts: list[dict[str, Any]] = []
        for index, script in enumerate(request.scripts):
            field = f"scripts[{index}]"
            parts = names.parse(script.lane_item, LANE_ITEM, field=f"{field}.lane_item")
            if parts["session"] != str(session_id):
                raise InvalidArgument(FieldViolation(f"{field}.lane_item", "must belong to the session"))
            scripts.append(
                {
                    "script_body": script.script_body,
                    "language": convert.LANGUAGE.db(script.language, field=f"{field}.language"),
                    "suggested_name": script.title.strip(),
                    "source_lane_item_id": parts["lane_item"],
                }
            )
        rows = await self._drafts.import_session_scripts(_account(), source, session_id, scripts)
        return pb.ImportSessionScriptsResponse(draft_templates=[convert.draft(r) for r in rows])
