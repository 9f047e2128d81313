"""Tables of the ``sessions`` schema (declared once; migrations match them).

Every key and foreign key includes ``account_id`` so that uniqueness and FK
checks, which bypass row-level security, never reveal another tenant's rows.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
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
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData(schema="sessions")

# What a session is found by (sessions_0014's index; a query must use the same text).
# (As SQLAlchemy reflects it back, so that the index compares equal to this model.)
SESSION_SEARCH = (
    "to_tsvector('english'::regconfig, (((title::text || ' '::text) || problem) || ' '::text) "
    "|| COALESCE(resolution_summary, ''::text))"
)


ai_sessions = Table(
    "ai_sessions",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("ticket_ref", String(64), nullable=False),
    Column("ticket_kind", String(10), nullable=False),
    Column("title", String(200), nullable=False),
    Column("problem", Text, nullable=False, server_default=text("''")),
    Column("status", String(20), nullable=False, server_default=text("'active'")),
    Column("created_by", UUID(as_uuid=True), nullable=False),
    Column("request_id", UUID(as_uuid=True), nullable=True),
    # Who sent that request id and what it asked (services.core.requests).
    Column("request_fingerprint", String(64), nullable=True),
    # Task-lane items: [{id, kind, title, detail, script_body, script_language,
    # status, output, create_time, update_time}], in insertion order.
    Column("pending_task_lane", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("resolution_summary", Text, nullable=True),
    Column("escalation_reason", Text, nullable=True),
    Column("resolution_note_markdown", Text, nullable=True),
    Column("resolution_note_post_time", DateTime(timezone=True), nullable=True),
    Column("resolution_note_external_id", String(128), nullable=True),
    Column("resolution_note_state_version", Integer, nullable=True),
    Column("escalation_package_markdown", Text, nullable=True),
    Column("escalation_package_post_time", DateTime(timezone=True), nullable=True),
    Column("escalation_package_external_id", String(128), nullable=True),
    Column("escalation_package_state_version", Integer, nullable=True),
    # The latest posted revision of each (note_revisions holds them all).
    Column("resolution_note_revision", Integer, nullable=True),
    Column("resolution_note_posted_by", UUID(as_uuid=True), nullable=True),
    Column("resolution_note_posted_by_name", String(200), nullable=True),
    Column("escalation_package_revision", Integer, nullable=True),
    Column("escalation_package_posted_by", UUID(as_uuid=True), nullable=True),
    Column("escalation_package_posted_by_name", String(200), nullable=True),
    # Incremented by every write that changes what the note would say; the etag.
    Column("state_version", Integer, nullable=False, server_default=text("0")),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("end_time", DateTime(timezone=True), nullable=True),
    # People: display names as the tokens gave them when the id was recorded.
    Column("created_by_name", String(200), nullable=True),
    Column("assignee", UUID(as_uuid=True), nullable=True),
    Column("assignee_name", String(200), nullable=True),
    Column("closed_by", UUID(as_uuid=True), nullable=True),
    Column("closed_by_name", String(200), nullable=True),
    # The L1 walk whose escalation opened it (walks service id; no foreign key).
    Column("escalated_walk_id", UUID(as_uuid=True), nullable=True),
    # Why the service abandoned it (the stale-session sweep).
    Column("abandon_reason", Text, nullable=True),
    PrimaryKeyConstraint("account_id", "id", name="ai_sessions_pkey"),
    UniqueConstraint("account_id", "request_id", name="ai_sessions_request_id_key"),
    CheckConstraint("ticket_kind IN ('psa', 'internal')", name="ai_sessions_ticket_kind"),
    CheckConstraint("status IN ('active', 'resolved', 'escalated', 'abandoned')", name="ai_sessions_status"),
    CheckConstraint("jsonb_typeof(pending_task_lane) = 'array'", name="ai_sessions_lane_is_array"),
    CheckConstraint("state_version >= 0", name="ai_sessions_state_version_nonnegative"),
    Index("ai_sessions_recent", "account_id", text("create_time DESC"), text("id DESC")),
    Index("ai_sessions_by_ticket", "account_id", "ticket_ref", text("create_time DESC")),
    # The team queue: one assignee's sessions, or the unassigned ones (NULL).
    Index("ai_sessions_by_assignee", "account_id", "assignee", text("create_time DESC"), text("id DESC")),
    Index(
        "ai_sessions_active_by_user_ticket",
        "account_id",
        "created_by",
        "ticket_ref",
        postgresql_where=text("status = 'active'"),
    ),
    # One session per escalated walk (sessions_0010).
    Index(
        "ai_sessions_escalated_walk_key",
        "account_id",
        "escalated_walk_id",
        unique=True,
        postgresql_where=text("escalated_walk_id IS NOT NULL"),
    ),
    # The stale-session sweep: active sessions by last change (sessions_0010).
    Index(
        "ai_sessions_active_by_update_time",
        "account_id",
        "update_time",
        postgresql_where=text("status = 'active'"),
    ),
    # Full-text search for the copilot's similar resolved sessions (an
    # expression index: no stored column every read would carry). A GIN index
    # cannot lead with account_id without btree_gin; RLS scopes every match.
    Index("ai_sessions_search", text(SESSION_SEARCH), postgresql_using="gin"),
)

session_facts = Table(
    "session_facts",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("session_id", UUID(as_uuid=True), nullable=False),
    Column("text", Text, nullable=False),
    Column("source", String(20), nullable=False),
    # A task-lane item id of the same session; checked by the service (the
    # lane lives in JSONB, so no foreign key can point at it).
    Column("source_ref", String(64), nullable=True),
    Column("created_by", UUID(as_uuid=True), nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("delete_time", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("account_id", "id", name="session_facts_pkey"),
    ForeignKeyConstraint(
        ["account_id", "session_id"],
        ["sessions.ai_sessions.account_id", "sessions.ai_sessions.id"],
        name="session_facts_session_fkey",
        ondelete="CASCADE",
    ),
    CheckConstraint("source IN ('user', 'ai', 'task_lane')", name="session_facts_source"),
    CheckConstraint("length(text) BETWEEN 1 AND 4096", name="session_facts_text_length"),
    Index(
        "session_facts_active",
        "account_id",
        "session_id",
        "create_time",
        "id",
        postgresql_where=text("delete_time IS NULL"),
    ),
    Index("session_facts_all", "account_id", "session_id", "create_time", "id"),
)

session_suggested_fixes = Table(
    "session_suggested_fixes",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("session_id", UUID(as_uuid=True), nullable=False),
    Column("title", String(200), nullable=False),
    Column("summary_markdown", Text, nullable=False),
    Column("steps", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("confidence", Float, nullable=False),
    Column("rationale", Text, nullable=False, server_default=text("''")),
    Column("model", String(100), nullable=False),
    Column("state_version", Integer, nullable=False),
    Column("status", String(20), nullable=False, server_default=text("'proposed'")),
    Column("supersede_time", DateTime(timezone=True), nullable=True),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("decide_time", DateTime(timezone=True), nullable=True),
    Column("decided_by", UUID(as_uuid=True), nullable=True),
    Column("decided_by_name", String(200), nullable=True),
    Column("reject_reason", Text, nullable=True),
    PrimaryKeyConstraint("account_id", "id", name="session_suggested_fixes_pkey"),
    ForeignKeyConstraint(
        ["account_id", "session_id"],
        ["sessions.ai_sessions.account_id", "sessions.ai_sessions.id"],
        name="session_suggested_fixes_session_fkey",
        ondelete="CASCADE",
    ),
    CheckConstraint("status IN ('proposed', 'accepted', 'rejected')", name="session_suggested_fixes_status"),
    CheckConstraint("confidence >= 0 AND confidence <= 1", name="session_suggested_fixes_confidence"),
    # At most one active fix per session, even under concurrent proposals.
    Index(
        "session_suggested_fixes_one_active",
        "account_id",
        "session_id",
        unique=True,
        postgresql_where=text("supersede_time IS NULL"),
    ),
    Index(
        "session_suggested_fixes_history",
        "account_id",
        "session_id",
        text("create_time DESC"),
        text("id DESC"),
    ),
)

# Generated notes and packages, one per (session, kind, state version,
# format, time zone): an unchanged session is never sent to the model twice, across
# restarts and replicas.
note_previews = Table(
    "note_previews",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("session_id", UUID(as_uuid=True), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("state_version", Integer, nullable=False),
    Column("format", String(10), nullable=False),
    # The notes.time_zone its times are in: another zone is another text.
    Column("time_zone", String(64), nullable=False, server_default=text("'UTC'")),
    Column("text", Text, nullable=False),
    Column("model", String(100), nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # The version of the task.note / task.package prompt it was written with:
    # another version (an override, a reset) is another text.
    Column("prompt_version", Integer, nullable=False, server_default=text("1")),
    PrimaryKeyConstraint(
        "account_id",
        "session_id",
        "kind",
        "state_version",
        "format",
        "time_zone",
        "prompt_version",
        name="note_previews_pkey",
    ),
    ForeignKeyConstraint(
        ["account_id", "session_id"],
        ["sessions.ai_sessions.account_id", "sessions.ai_sessions.id"],
        name="note_previews_session_fkey",
        ondelete="CASCADE",
    ),
    CheckConstraint("kind IN ('resolution_note', 'escalation_package')", name="note_previews_kind"),
    CheckConstraint("format IN ('markdown', 'plain', 'html')", name="note_previews_format"),
)

# Every posted revision of a session's resolution note or escalation package
# (immutable): revision 1 is the first post, each correction the next.
note_revisions = Table(
    "note_revisions",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("session_id", UUID(as_uuid=True), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("format", String(10), nullable=False),
    Column("state_version", Integer, nullable=False),
    Column("external_id", String(128), nullable=False),
    Column("post_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("posted_by", UUID(as_uuid=True), nullable=False),
    Column("posted_by_name", String(200), nullable=True),
    # Its preview's prompt version (NULL before sessions_0015).
    Column("prompt_version", Integer, nullable=True),
    PrimaryKeyConstraint("account_id", "id", name="note_revisions_pkey"),
    ForeignKeyConstraint(
        ["account_id", "session_id"],
        ["sessions.ai_sessions.account_id", "sessions.ai_sessions.id"],
        name="note_revisions_session_fkey",
        ondelete="CASCADE",
    ),
    UniqueConstraint("account_id", "session_id", "kind", "revision", name="note_revisions_revision_key"),
    UniqueConstraint(
        "account_id", "session_id", "kind", "external_id", name="note_revisions_external_id_key"
    ),
    CheckConstraint("kind IN ('resolution_note', 'escalation_package')", name="note_revisions_kind"),
    CheckConstraint("format IN ('markdown', 'plain', 'html')", name="note_revisions_format"),
    CheckConstraint("revision > 0", name="note_revisions_revision_positive"),
    Index("note_revisions_history", "account_id", "session_id", "post_time", "id"),
)

# A transactional outbox: work for other services recorded in the same
# transaction as the change that causes it, delivered later with retries.
outbox = Table(
    "outbox",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("topic", String(60), nullable=False),
    Column("dedupe_key", String(200), nullable=False),
    Column("payload", JSONB, nullable=False),
    # W3C trace context of the request that recorded it.
    Column("trace", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("deliver_time", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    # Set when delivery gave up (next_attempt_time is then 'infinity'): a dead letter.
    Column("dead_time", DateTime(timezone=True), nullable=True),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("account_id", "id", name="outbox_pkey"),
    UniqueConstraint("account_id", "topic", "dedupe_key", name="outbox_dedupe_key"),
    Index("outbox_due", "account_id", "next_attempt_time", postgresql_where=text("deliver_time IS NULL")),
    # ListDeadLetters, newest first, without sorting the account's outbox history.
    Index(
        "outbox_dead_letters",
        "account_id",
        text("dead_time DESC"),
        text("id DESC"),
        postgresql_where=text("dead_time IS NOT NULL AND deliver_time IS NULL"),
    ),
)

# The copilot conversation (sessions_0012): user and assistant messages,
# immutable once written. An assistant reply records the model, tier, prompt
# version and tokens it took, and the tool calls it made as the model made
# them; each tool call becomes a proposal (below) the engineer confirms.
session_messages = Table(
    "session_messages",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("session_id", UUID(as_uuid=True), nullable=False),
    Column("role", String(10), nullable=False),
    Column("text", Text, nullable=False),
    # Who sent a user message (the engineer's user id); for a reply, who asked.
    Column("author", UUID(as_uuid=True), nullable=False),
    Column("author_name", String(200), nullable=True),
    # [{id, name, input}] as the model called its tools (assistant only).
    Column("tool_calls", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("model", String(100), nullable=False, server_default=text("''")),
    Column("tier", String(10), nullable=False, server_default=text("''")),
    Column("prompt_version", Integer, nullable=False, server_default=text("0")),
    Column("input_tokens", Integer, nullable=False, server_default=text("0")),
    Column("output_tokens", Integer, nullable=False, server_default=text("0")),
    # The reply was cut short (the client went away, or the model failed mid-stream).
    Column("partial", Boolean, nullable=False, server_default=text("false")),
    # The session state the reply was made from.
    Column("state_version", Integer, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # [{name, title}]: the account's resolved sessions and library templates
    # the reply was given (and cites), best first.
    Column("citations", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    PrimaryKeyConstraint("account_id", "id", name="session_messages_pkey"),
    ForeignKeyConstraint(
        ["account_id", "session_id"],
        ["sessions.ai_sessions.account_id", "sessions.ai_sessions.id"],
        name="session_messages_session_fkey",
        ondelete="CASCADE",
    ),
    CheckConstraint("role IN ('user', 'assistant')", name="session_messages_role"),
    CheckConstraint("length(text) <= 32000", name="session_messages_text_length"),
    CheckConstraint("jsonb_typeof(tool_calls) = 'array'", name="session_messages_tool_calls_is_array"),
    CheckConstraint("jsonb_typeof(citations) = 'array'", name="session_messages_citations_is_array"),
    Index("session_messages_history", "account_id", "session_id", "create_time", "id"),
)

# What the copilot proposes (one per tool call of a reply): pending until the
# engineer applies it (then ``result`` names what it wrote) or dismisses it.
message_proposals = Table(
    "message_proposals",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("session_id", UUID(as_uuid=True), nullable=False),
    Column("message_id", UUID(as_uuid=True), nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("tool_call_id", String(100), nullable=False),
    # What to write: {text} for a fact; {lane_kind, title, detail} for a lane
    # item; {title, summary, steps} for a fix.
    Column("payload", JSONB, nullable=False),
    Column("state", String(20), nullable=False, server_default=text("'pending'")),
    Column("result", String(200), nullable=True),
    Column("decided_by", UUID(as_uuid=True), nullable=True),
    Column("decided_by_name", String(200), nullable=True),
    Column("decide_time", DateTime(timezone=True), nullable=True),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("account_id", "id", name="message_proposals_pkey"),
    ForeignKeyConstraint(
        ["account_id", "message_id"],
        ["sessions.session_messages.account_id", "sessions.session_messages.id"],
        name="message_proposals_message_fkey",
        ondelete="CASCADE",
    ),
    ForeignKeyConstraint(
        ["account_id", "session_id"],
        ["sessions.ai_sessions.account_id", "sessions.ai_sessions.id"],
        name="message_proposals_session_fkey",
        ondelete="CASCADE",
    ),
    CheckConstraint("kind IN ('fact', 'lane_item', 'fix')", name="message_proposals_kind"),
    CheckConstraint("state IN ('pending', 'applied', 'dismissed')", name="message_proposals_state"),
    CheckConstraint("jsonb_typeof(payload) = 'object'", name="message_proposals_payload_is_object"),
    Index("message_proposals_by_message", "account_id", "message_id", "ordinal"),
    Index("message_proposals_by_session", "account_id", "session_id"),
)

# The account's AI token usage per calendar month (UTC; ``month`` is its first
# day): added to in the transaction that stores each copilot reply, read
# against ``ai.monthly_token_budget`` before every copilot model call.
ai_usage = Table(
    "ai_usage",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("month", Date, nullable=False),
    Column("input_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("output_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("model_calls", BigInteger, nullable=False, server_default=text("0")),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("account_id", "month", name="ai_usage_pkey"),
    CheckConstraint("EXTRACT(day FROM month) = 1", name="ai_usage_month_is_first_day"),
    CheckConstraint(
        "input_tokens >= 0 AND output_tokens >= 0 AND model_calls >= 0", name="ai_usage_nonnegative"
    ),
)
