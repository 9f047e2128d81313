"""The account's script templates: create, change, find, use. Names are unique
per account; a change names the revision it was made against (etag); a body
with a detected secret is refused (``credentials``) unless a team_admin
allows it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from services.core.auth import Principal
from services.core.db import Database
from services.core.errors import Aborted, AlreadyExists, found, not_found
from services.core.search import Search
from services.library import convert, credentials, storage, templates
from services.library.storage import Connection, NameTaken, TemplateRow


def name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(
        f"a template named {name!r} already exists",
        reason="TEMPLATE_NAME_TAKEN",
        metadata={"display_name": name},
    )


def check_revision(row: TemplateRow, expected: int | None) -> None:
    if expected is not None and expected != row.revision:
        raise Aborted("template changed since it was read; read it again", reason="ETAG_MISMATCH")


async def template(conn: Connection, template_id: uuid.UUID, name: str, *, lock: bool = False) -> TemplateRow:
    return found(await storage.get_template(conn, template_id, lock=lock), "script template", name)


class Templates:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, principal: Principal, values: dict[str, Any], *, allow_detected_secrets: bool
    ) -> TemplateRow:
        """``values``: the template's columns, checked (but for secrets)."""
        credentials.check_template(
            principal,
            values["body"],
            values["parameters"],
            prefix="script_template",
            allow=allow_detected_secrets,
        )
        try:
            async with self._db.transaction(principal.account_id) as conn:
                return await storage.insert_template(
                    conn,
                    account_id=principal.account_id,
                    id=uuid.uuid4(),
                    created_by=principal.user_id,
                    **values,
                )
        except NameTaken as taken:
            raise name_taken(taken.name) from taken

    async def get(self, account: uuid.UUID, template_id: uuid.UUID, name: str) -> TemplateRow:
        async with self._db.transaction(account) as conn:
            return await template(conn, template_id, name)

    async def page(
        self,
        account: uuid.UUID,
        *,
        search: Search | None,
        tag: str | None,
        language: str | None,
        order: str,
        after: Sequence[Any] | None,
        limit: int,
    ) -> list[TemplateRow]:
        async with self._db.transaction(account) as conn:
            return await storage.list_templates(
                conn, search=search, tag=tag, language=language, order=order, after=after, limit=limit
            )

    async def update(
        self,
        principal: Principal,
        template_id: uuid.UUID,
        name: str,
        values: dict[str, Any],
        *,
        parameters: Sequence[Any] | None,
        expected_revision: int | None,
        allow_detected_secrets: bool,
    ) -> TemplateRow:
        """``values``: the changed columns, checked; ``parameters`` the new
        ones as given, or None to keep the template's. Parameters are checked
        against the body again whenever either changes, and both for secrets."""
        try:
            async with self._db.transaction(principal.account_id) as conn:
                row = await template(conn, template_id, name, lock=True)
                check_revision(row, expected_revision)
                if parameters is not None or "body" in values:
                    given = parameters if parameters is not None else convert.parameters(row.parameters)
                    body = values.get("body", row.body)
                    checked = templates.check_parameters(body, given, prefix="script_template")
                    credentials.check_template(
                        principal, body, checked, prefix="script_template", allow=allow_detected_secrets
                    )
                    values = {**values, "parameters": checked}
                return await storage.update_template(conn, row.id, **values)
        except NameTaken as taken:
            raise name_taken(taken.name) from taken

    async def delete(self, account: uuid.UUID, template_id: uuid.UUID, name: str) -> None:
        async with self._db.transaction(account) as conn:
            if not await storage.delete_template(conn, template_id):
                raise not_found("script template", name)

    async def record_use(self, account: uuid.UUID, template_id: uuid.UUID, name: str) -> int:
        async with self._db.transaction(account) as conn:
            count = await storage.record_use(conn, template_id)
        if count is None:
            raise not_found("script template", name)
        return count

    async def render(
        self, account: uuid.UUID, template_id: uuid.UUID, name: str, values: dict[str, str]
    ) -> str:
        async with self._db.transaction(account) as conn:
            row = await template(conn, template_id, name)
        return templates.render(row.body, row.parameters, values)
