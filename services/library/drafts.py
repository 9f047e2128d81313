"""Draft templates: scripts proposed for the library (by hand, or from a
resolved session's successful scripts), made reusable by the AI, and
reviewed into templates (approve: the template and the review in one
transaction) or rejected. Only pending drafts are reviewed.

A draft never holds a credential (``credentials``): its script's secrets are
replaced by secret parameters before it is stored, the AI's version is
checked again, and so is the body an approval publishes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from services.core import requests
from services.core.ai import AI, ScriptDraft
from services.core.ai.redaction import redact
from services.core.auth import Principal
from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.errors import Aborted, FailedPrecondition, FieldViolation, InvalidArgument, found
from services.library import catalogue, convert, credentials, storage, templates
from services.library.provenance import DraftSource
from services.library.storage import Connection, DraftRow, NameTaken, TemplateRow


def check_pending(row: DraftRow) -> None:
    if row.status != "pending":
        raise FailedPrecondition(
            f"draft is {row.status}; only pending drafts can be reviewed", reason="DRAFT_NOT_PENDING"
        )


def display_name(row: DraftRow, given: str) -> str:
    """The approved template's name: the reviewer's, else the draft's suggestion."""
    name = (given or row.suggested_name or "").strip()
    if not name:
        raise InvalidArgument(FieldViolation("display_name", "is required: the draft has no suggested name"))
    return name


async def draft(conn: Connection, draft_id: uuid.UUID, name: str, *, lock: bool = False) -> DraftRow:
    return found(await storage.get_draft(conn, draft_id, lock=lock), "draft template", name)


# Scripts larger than this are searched for secrets off the event loop.
_LARGE = 16 * 1024


def secured(values: dict[str, Any]) -> dict[str, Any]:
    """A new draft's columns with its script's credentials replaced by secret
    parameters (and any in its suggested name masked)."""
    result = credentials.secure(values["script_body"])
    return {
        **values,
        "script_body": result.body,
        "parameters": result.parameters or None,
        "redactions": result.redactions,
        "suggested_name": redact(values["suggested_name"]),
    }


async def secured_all(scripts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if sum(len(s["script_body"]) for s in scripts) < _LARGE:
        return [secured(s) for s in scripts]
    return await asyncio.to_thread(lambda: [secured(s) for s in scripts])


def published(row: DraftRow) -> credentials.Secured:
    """What approving ``row`` publishes: its body and parameters with any
    secret still in them (a draft stored before redaction existed, a model's
    answer) replaced too."""
    return credentials.secure(row.templatized_body or row.script_body, row.parameters or [])


class Drafts:
    def __init__(self, db: Database, ai: AI, settings: SettingsReader) -> None:
        self._db = db
        self._ai = ai
        self._settings = settings

    async def create(
        self,
        principal: Principal,
        source: DraftSource,
        values: dict[str, Any],
        *,
        request_id: uuid.UUID | None,
        fingerprint: str,
    ) -> tuple[DraftRow, bool]:
        """The draft and whether it is new; a repeated ``request_id`` returns
        the first draft (the same caller and request only: AIP-155)."""
        (values,) = await secured_all([values])
        async with self._db.transaction(principal.account_id) as conn:
            row = await storage.insert_draft(
                conn,
                id=uuid.uuid4(),
                request_id=request_id,
                request_fingerprint=fingerprint if request_id is not None else None,
                **source.columns(),
                **values,
            )
            if row is not None:
                return row, True
            if request_id is not None:  # a repeat of the same request id
                row = await storage.draft_by_request(conn, request_id)
                if row is not None:
                    requests.check_replay(row.request_fingerprint, fingerprint)
                    return row, False
        raise Aborted("a concurrent create conflicted; retry", reason="CONCURRENT_CREATE")

    async def get(self, account: uuid.UUID, draft_id: uuid.UUID, name: str) -> DraftRow:
        async with self._db.transaction(account) as conn:
            return await draft(conn, draft_id, name)

    async def page(
        self, account: uuid.UUID, *, status: str | None, after: tuple[Any, uuid.UUID] | None, limit: int
    ) -> list[DraftRow]:
        async with self._db.transaction(account) as conn:
            return await storage.list_drafts(conn, status=status, after=after, limit=limit)

    async def count_pending(self, account: uuid.UUID) -> int:
        async with self._db.transaction(account) as conn:
            return await storage.count_pending(conn)

    async def templatize(self, account: uuid.UUID, draft_id: uuid.UUID, name: str) -> DraftRow:
        """The AI's reusable version of the script (parameters for what varies,
        the draft's secret ones kept secret, any secret in the answer replaced
        too); the model is called outside any transaction."""
        async with self._db.transaction(account) as conn:
            row = await draft(conn, draft_id, name)
            check_pending(row)
        prefs = await self._settings.preferences()
        result = await self._ai.templatize_script(
            ScriptDraft(body=row.script_body, language=row.language, name_hint=row.suggested_name), prefs
        )
        params = [
            {"name": p.name, "description": p.description, "required": p.required, "default": p.default}
            for p in result.parameters
        ]
        answer = credentials.secure(
            result.body, credentials.keep_secret(result.body, params, row.parameters or [])
        )
        async with self._db.transaction(account) as conn:
            row = await draft(conn, draft_id, name, lock=True)
            check_pending(row)
            return await storage.update_draft(
                conn,
                row.id,
                templatized_body=answer.body,
                parameters=answer.parameters,
                redactions=row.redactions + answer.redactions,
                suggested_name=row.suggested_name or redact(result.name),
            )

    async def approve(
        self,
        principal: Principal,
        draft_id: uuid.UUID,
        name: str,
        *,
        display_name_given: str,
        description: str,
        tags: list[str],
    ) -> tuple[DraftRow, TemplateRow]:
        try:
            async with self._db.transaction(principal.account_id) as conn:
                row = await draft(conn, draft_id, name, lock=True)
                check_pending(row)
                template_name = display_name(row, display_name_given)
                publish = published(row)
                body = publish.body
                checked = templates.check_parameters(
                    body, convert.parameters(publish.parameters), prefix="draft_template"
                )
                made = await storage.insert_template(
                    conn,
                    account_id=principal.account_id,
                    id=uuid.uuid4(),
                    name=template_name,
                    description=description,
                    language=row.language,
                    body=body,
                    parameters=checked,
                    tags=tags,
                    source_session_id=row.source_session_id,
                    source_user_id=row.source_user_id,
                    source_user_name=row.source_user_name,
                    source_ticket_ref=row.source_ticket_ref,
                    created_by=principal.user_id,
                )
                approved = await storage.update_draft(
                    conn,
                    row.id,
                    status="approved",
                    template_id=made.id,
                    reviewer_id=principal.user_id,
                    review_time=made.create_time,
                    redactions=row.redactions + publish.redactions,
                )
        except NameTaken as taken:
            raise catalogue.name_taken(taken.name) from taken
        return approved, made

    async def reject(self, principal: Principal, draft_id: uuid.UUID, name: str, note: str) -> DraftRow:
        async with self._db.transaction(principal.account_id) as conn:
            check_pending(await draft(conn, draft_id, name, lock=True))
            return await storage.reject_draft(conn, draft_id, reviewer_id=principal.user_id, note=note)

    async def import_session_scripts(
        self, account: uuid.UUID, source: DraftSource, session_id: uuid.UUID, scripts: list[dict[str, Any]]
    ) -> list[DraftRow]:
        """One draft per script (a lane item already imported is left as it
        is), returned in the order given, each with its credentials replaced
        by secret parameters."""
        scripts = await secured_all(scripts)
        async with self._db.transaction(account) as conn:
            for values in scripts:
                await storage.insert_draft(conn, id=uuid.uuid4(), **source.columns(), **values)
            rows = {r.source_lane_item_id: r for r in await storage.drafts_of_session(conn, session_id)}
        return [rows[v["source_lane_item_id"]] for v in scripts if v["source_lane_item_id"] in rows]
