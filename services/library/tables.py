"""Tables of the ``library`` schema (declared once; migrations match them)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR, UUID

metadata = MetaData(schema="library")

LANGUAGES = "('powershell', 'bash', 'python', 'cmd')"

# Name matches rank above description matches, which rank above body matches.
SEARCH = (
    "setweight(to_tsvector('english'::regconfig, coalesce(name, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(body, '')), 'C')"
)

script_templates = Table(
    "script_templates",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("language", String(20), nullable=False),
    Column("body", Text, nullable=False),
    Column("parameters", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("tags", ARRAY(String(40)), nullable=False, server_default=text("'{}'::character varying[]")),
    Column("usage_count", BigInteger, nullable=False, server_default=text("0")),
    Column("last_use_time", DateTime(timezone=True), nullable=True),
    Column("source_session_id", UUID(as_uuid=True), nullable=True),
    Column("source_user_id", UUID(as_uuid=True), nullable=True),
    Column("source_user_name", String(200), nullable=True),
    Column("source_ticket_ref", String(64), nullable=True),
    Column("created_by", UUID(as_uuid=True), nullable=False),
    Column("revision", Integer, nullable=False, server_default=text("1")),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("search", TSVECTOR, Computed(SEARCH, persisted=True)),
    PrimaryKeyConstraint("account_id", "id", name="script_templates_pkey"),
    CheckConstraint(f"language IN {LANGUAGES}", name="script_templates_language"),
    CheckConstraint("usage_count >= 0", name="script_templates_usage_nonnegative"),
    Index("script_templates_name_key", "account_id", text("lower(name)"), unique=True),
    Index("script_templates_recent", "account_id", text("create_time DESC"), text("id DESC")),
    Index("script_templates_usage", "account_id", text("usage_count DESC"), text("id DESC")),
    # Full-text search. A GIN index cannot lead with account_id without the
    # btree_gin extension (not available everywhere we run); RLS still scopes
    # every row to the account, and the index is not unique.
    Index("script_templates_search", "search", postgresql_using="gin"),
)

draft_templates = Table(
    "draft_templates",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("script_body", Text, nullable=False),
    Column("language", String(20), nullable=False),
    Column("suggested_name", String(200), nullable=False, server_default=text("''")),
    Column("templatized_body", Text, nullable=True),
    Column("parameters", JSONB, nullable=True),
    Column("status", String(20), nullable=False, server_default=text("'pending'")),
    Column("reviewer_id", UUID(as_uuid=True), nullable=True),
    Column("review_time", DateTime(timezone=True), nullable=True),
    Column("review_note", Text, nullable=True),
    Column("template_id", UUID(as_uuid=True), nullable=True),
    Column("source_session_id", UUID(as_uuid=True), nullable=True),
    Column("source_user_id", UUID(as_uuid=True), nullable=True),
    Column("source_user_name", String(200), nullable=True),
    Column("source_ticket_ref", String(64), nullable=True),
    Column("source_lane_item_id", String(64), nullable=True),
    Column("request_id", UUID(as_uuid=True), nullable=True),
    # Who sent that request id and what it asked (services.core.requests).
    Column("request_fingerprint", String(64), nullable=True),
    # What was replaced by secret parameters: [{parameter, kind, line}], never the secret.
    Column("redactions", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("created_by", UUID(as_uuid=True), nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("account_id", "id", name="draft_templates_pkey"),
    ForeignKeyConstraint(
        ["account_id", "template_id"],
        ["library.script_templates.account_id", "library.script_templates.id"],
        name="draft_templates_template_fkey",
        ondelete="SET NULL (template_id)",
    ),
    UniqueConstraint(
        "account_id", "source_session_id", "source_lane_item_id", name="draft_templates_source_key"
    ),
    UniqueConstraint("account_id", "request_id", name="draft_templates_request_id_key"),
    CheckConstraint(f"language IN {LANGUAGES}", name="draft_templates_language"),
    CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="draft_templates_status"),
    CheckConstraint(
        "status <> 'approved' OR template_id IS NOT NULL OR review_time IS NOT NULL",
        name="draft_templates_approved",
    ),
    # "N scripts ready to review" in one index scan.
    Index("draft_templates_pending", "account_id", postgresql_where=text("status = 'pending'")),
    Index("draft_templates_recent", "account_id", text("create_time DESC"), text("id DESC")),
    # Under the foreign key (deleting a template updates its drafts).
    Index("draft_templates_by_template", "account_id", "template_id"),
)
