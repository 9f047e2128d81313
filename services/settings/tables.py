"""Tables of the ``settings`` schema (declared once; migrations match them)."""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, DateTime, MetaData, Table, text
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
