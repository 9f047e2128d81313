"""settings: prompts, the text every AI task sends, with global defaults.

A row with ``account_id`` NULL is a global default, shipped here; a row with
an account is that account's override. Rows are never deleted: an override or
a reset deactivates the account's active row, so every version a message or a
note revision recorded keeps its text. RLS: the usual policy (reads and writes
of the account's own rows only) plus a read-only policy on the global rows,
so every account reads the defaults and none can write them.

The default texts are the prompts the Anthropic backend sent before this
table existed, verbatim (``tests/settings`` checks them against the backend's
constants). A later change of a default inserts a new global version and
deactivates the old one (``migrations.tenancy.across_tenants``).

Revision ID: settings_0004
Revises: settings_0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.tenancy import runtime_role, tenant_table

revision: str = "settings_0004"
down_revision: str | None = "settings_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULTS: tuple[tuple[str, str, str], ...] = (
    (
        "system",
        "system",
        "You are FlowPilot, an assistant for MSP engineers troubleshooting client tickets. "
        "Be concrete and brief, prefer the most likely cause first, never invent facts that are "
        "not in the context, and never repeat secrets. Answer only by calling the tool you are given.",
    ),
    (
        "task.fix",
        "task",
        "Propose the single most likely fix for this ticket, as ordered steps an engineer can follow, "
        "with your confidence from 0 to 1.",
    ),
    (
        "task.note",
        "task",
        "Write the ticket's resolution note in {format} for the client's PSA: problem, what was found, "
        "what was done with each check's and script's outcome, the fix applied (only a fix marked "
        "ACCEPTED is applied; list REJECTED ones under 'Tried / ruled out' with their reason, and never "
        "present a SUGGESTED ONLY fix as applied), how it was verified, and a short timeline with the "
        "times as given (they are in the account's time zone). No greetings.",
    ),
    (
        "task.package",
        "task",
        "Write an escalation package in {format} for the next engineer: the problem, everything tried with "
        "results, what is ruled out (REJECTED fixes, with their reason), fixes only SUGGESTED and never "
        "applied, open questions, why it is escalated, and a short timeline with the times as given.",
    ),
    (
        "task.templatize",
        "task",
        "Turn this script into a reusable template: replace client-specific literals (host names, IP "
        "addresses, user names, paths, quoted values) with {{parameter_name}} placeholders and list each "
        "parameter with a description and its original value as default.",
    ),
    (
        "task.tree",
        "task",
        "Build a decision tree an L1 technician can walk for this problem. Nodes are question, action, "
        "resolution or escalation; questions and actions have options each leading to another node id; "
        "every path ends in a resolution or escalation node; no cycles; at most 40 nodes.",
    ),
    (
        "task.chat",
        "task",
        "You are FlowPilot's copilot: a senior engineer on the call with an MSP engineer working a client's "
        "ticket. Answer briefly and concretely from the session below, most likely cause first; quote the facts "
        "you rely on; never invent facts and never repeat secrets. You cannot change the session yourself: to "
        "add a fact, add a task-lane item (a check, script or question) or suggest a fix, call the matching "
        "tool, and the engineer decides whether to apply it. Suggest a fix only when the facts support one.",
    ),
    ("tool.propose_fact", "tool", "Propose recording something now known about the problem."),
    ("tool.propose_lane_item", "tool", "Propose a next check, script or question for the task lane."),
    (
        "tool.propose_fix",
        "tool",
        "Propose a fix (it replaces the session's active suggested fix if applied).",
    ),
)


def upgrade() -> None:
    op.create_table(
        "prompts",
        sa.Column("account_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column(
            "create_time",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.CheckConstraint("purpose IN ('system', 'task', 'tool')", name="prompts_purpose"),
        sa.CheckConstraint("slug ~ '^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)*$'", name="prompts_slug"),
        sa.CheckConstraint("char_length(slug) <= 64", name="prompts_slug_length"),
        sa.CheckConstraint("char_length(text) BETWEEN 1 AND 20000", name="prompts_text_length"),
        sa.CheckConstraint("version > 0", name="prompts_version_positive"),
        schema="settings",
    )
    op.create_index(
        "prompts_versions",
        "prompts",
        ["account_id", "slug", "version"],
        unique=True,
        schema="settings",
        postgresql_nulls_not_distinct=True,
    )
    op.create_index(
        "prompts_active",
        "prompts",
        ["account_id", "slug"],
        unique=True,
        schema="settings",
        postgresql_where=sa.text("active"),
        postgresql_nulls_not_distinct=True,
    )
    # The defaults go in before row-level security is on (as the owner, FORCE
    # would refuse a row without an account).
    prompts = sa.table(
        "prompts",
        sa.column("slug", sa.Text()),
        sa.column("purpose", sa.Text()),
        sa.column("text", sa.Text()),
        sa.column("version", sa.Integer()),
        sa.column("active", sa.Boolean()),
        schema="settings",
    )
    op.bulk_insert(
        prompts,
        [
            {"slug": slug, "purpose": purpose, "text": body, "version": 1, "active": True}
            for slug, purpose, body in DEFAULTS
        ],
    )
    tenant_table("settings.prompts", privileges="SELECT, INSERT")
    # Writes only deactivate a row; nothing else of a stored row ever changes.
    op.execute(f'GRANT UPDATE (active) ON settings.prompts TO "{runtime_role()}"')
    # Every account reads the global defaults (and only reads them: the
    # tenant policy above is the only one for writes, and a write must pass
    # both its USING and WITH CHECK). Fail closed: no tenant, no row.
    op.execute(
        "CREATE POLICY global_defaults ON settings.prompts FOR SELECT USING "
        "(account_id IS NULL AND (SELECT tenancy.current_account_id()) IS NOT NULL)"
    )


def downgrade() -> None:
    op.drop_table("prompts", schema="settings")
