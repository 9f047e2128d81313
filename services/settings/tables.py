"""Tables of the ``settings`` schema (declared once; migrations match them)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData(schema="settings")

# One row per account, created by the first write. ``preferences`` maps a key
# to {"value": …, "revision": n, "update_time": …, "updated_by": …}; an entry
# without "value" is a reset (the default applies). ``revision`` counts writes
# to the row and gives every entry a unique revision, which is its etag.
account_settings = Table(
    "account_settings",
    metadata,
    Column("account_id", UUID(as_uuid=True), primary_key=True),
    Column("preferences", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("revision", BigInteger, nullable=False, server_default=text("0")),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    CheckConstraint("jsonb_typeof(preferences) = 'object'", name="preferences_is_object"),
)

# The text of every AI prompt (settings_0004). ``account_id`` NULL is a global
# default (read-only for every account under RLS); an account's row is its
# override. Rows are never deleted: an override or reset deactivates the
# account's active row, so a recorded version keeps its text. At most one
# active row per (account, slug); versions are unique per (account, slug),
# NULL counting as one account (NULLS NOT DISTINCT).
prompts = Table(
    "prompts",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=True),
    Column("slug", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_by", UUID(as_uuid=True), nullable=True),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    CheckConstraint("purpose IN ('system', 'task', 'tool')", name="prompts_purpose"),
    CheckConstraint("slug ~ '^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)*$'", name="prompts_slug"),
    CheckConstraint("char_length(slug) <= 64", name="prompts_slug_length"),
    CheckConstraint("char_length(text) BETWEEN 1 AND 20000", name="prompts_text_length"),
    CheckConstraint("version > 0", name="prompts_version_positive"),
    Index(
        "prompts_versions",
        "account_id",
        "slug",
        "version",
        unique=True,
        postgresql_nulls_not_distinct=True,
    ),
    Index(
        "prompts_active",
        "account_id",
        "slug",
        unique=True,
        postgresql_where=text("active"),
        postgresql_nulls_not_distinct=True,
    ),
)
