"""The library's rules over rows, without gRPC or a database."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.core.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument
from services.library import catalogue, drafts
from services.library.storage import DraftRow, TemplateRow

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def a_draft(**changes: Any) -> DraftRow:
    row = DraftRow(
        account_id=uuid.uuid4(),
        id=uuid.uuid4(),
        script_body="Get-Service Spooler",
        language="powershell",
        suggested_name="",
        templatized_body=None,
        parameters=None,
        status="pending",
        reviewer_id=None,
        review_time=None,
        review_note=None,
        template_id=None,
        source_session_id=None,
        source_user_id=None,
        source_user_name=None,
        source_ticket_ref=None,
        source_lane_item_id=None,
        request_id=None,
        request_fingerprint=None,
        redactions=[],
        created_by=uuid.uuid4(),
        create_time=NOW,
    )
    return dataclasses.replace(row, **changes)


def test_only_pending_drafts_are_reviewed() -> None:
    drafts.check_pending(a_draft())
    with pytest.raises(FailedPrecondition) as caught:
        drafts.check_pending(a_draft(status="approved"))
    assert caught.value.reason == "DRAFT_NOT_PENDING"


def test_an_approved_template_is_named_by_the_reviewer_or_the_suggestion() -> None:
    assert drafts.display_name(a_draft(suggested_name="Restart spooler"), "") == "Restart spooler"
    assert drafts.display_name(a_draft(suggested_name="Restart spooler"), " Spooler fix ") == "Spooler fix"
    with pytest.raises(InvalidArgument) as caught:
        drafts.display_name(a_draft(suggested_name="  "), "")
    assert caught.value.violations[0].field == "display_name"


def test_a_stale_etag_is_refused_and_a_taken_name_is_named() -> None:
    template = TemplateRow(
        account_id=uuid.uuid4(),
        id=uuid.uuid4(),
        name="t",
        description="",
        language="bash",
        body="echo",
        parameters=[],
        tags=[],
        usage_count=0,
        last_use_time=None,
        source_session_id=None,
        source_user_id=None,
        source_user_name=None,
        source_ticket_ref=None,
        created_by=uuid.uuid4(),
        revision=4,
        create_time=NOW,
        update_time=NOW,
    )
    catalogue.check_revision(template, None)
    catalogue.check_revision(template, 4)
    with pytest.raises(Aborted):
        catalogue.check_revision(template, 3)
    taken = catalogue.name_taken("Restart spooler")
    assert isinstance(taken, AlreadyExists) and taken.reason == "TEMPLATE_NAME_TAKEN"
