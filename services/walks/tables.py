"""Tables of the ``walks`` schema (declared once; migrations match them).

``l1_walk_sessions`` keeps the reference model's columns and CHECK rules. Its
trap — ``flow_id ON DELETE SET NULL`` would leave a ``flow`` walk violating
the target-consistency CHECK — is resolved by never deleting flows (they are
archived) and making the foreign keys RESTRICT, so the database refuses the
delete outright instead of failing on the CHECK.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
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
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR, UUID

metadata = MetaData(schema="walks")

# A flow's search document: title (A), description (B), node text (C), ranked
# like the library's templates. The node text is cut at 100,000 characters so
# that no tree (up to 500 nodes of 2,000) exceeds a tsvector's 1 MiB.
FLOW_SEARCH = (
    "setweight(to_tsvector('english'::regconfig, coalesce(name, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, "
    '"left"((jsonb_path_query_array(tree, \'$."nodes"[*]."text"\'::jsonpath))::text, 100000)), \'C\')'
)
MAX_CATEGORY_DEPTH = 3

flow_categories = Table(
    "flow_categories",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("parent_id", UUID(as_uuid=True), nullable=True),
    Column("name", String(100), nullable=False),
    Column("depth", Integer, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("account_id", "id", name="flow_categories_pkey"),
    ForeignKeyConstraint(
        ["account_id", "parent_id"],
        ["walks.flow_categories.account_id", "walks.flow_categories.id"],
        name="flow_categories_parent_fkey",
        ondelete="RESTRICT",
    ),
    CheckConstraint(f"depth BETWEEN 1 AND {MAX_CATEGORY_DEPTH}", name="flow_categories_depth"),
    CheckConstraint("(parent_id IS NULL) = (depth = 1)", name="flow_categories_top"),
    # Names unique among siblings (the top level being one set of siblings).
    Index(
        "flow_categories_sibling_name",
        "account_id",
        text("coalesce(parent_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
        text("lower(name)"),
        unique=True,
    ),
    Index("flow_categories_by_parent", "account_id", "parent_id"),  # under the foreign key
    Index("flow_categories_by_name", "account_id", "name", "id"),
)

flows = Table(
    "flows",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("tree", JSONB, nullable=False),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("status", String(20), nullable=False, server_default=text("'draft'")),
    Column("created_by", UUID(as_uuid=True), nullable=False),
    Column("created_by_name", String(200), nullable=True),
    Column("revision", Integer, nullable=False, server_default=text("1")),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # The catalogue: a category, tags, walks started (every version), and the
    # search document.
    Column("category_id", UUID(as_uuid=True), nullable=True),
    Column("tags", ARRAY(String(40)), nullable=False, server_default=text("'{}'::character varying[]")),
    Column("usage_count", BigInteger, nullable=False, server_default=text("0")),
    Column("search", TSVECTOR, Computed(FLOW_SEARCH, persisted=True)),
    PrimaryKeyConstraint("account_id", "id", name="flows_pkey"),
    ForeignKeyConstraint(
        ["account_id", "category_id"],
        ["walks.flow_categories.account_id", "walks.flow_categories.id"],
        name="flows_category_fkey",
        ondelete="RESTRICT",
    ),
    CheckConstraint("status IN ('draft', 'published', 'archived')", name="flows_status"),
    CheckConstraint("cardinality(tags) <= 20", name="flows_tags"),
    Index("flows_by_name", "account_id", "name", "id"),
    Index("flows_by_category", "account_id", "category_id"),  # under the foreign key
    Index("flows_recent", "account_id", text("create_time DESC"), text("id DESC")),
    Index("flows_by_usage", "account_id", text("usage_count DESC"), text("id DESC")),
    # A GIN index cannot lead with account_id without btree_gin (see README).
    Index("flows_search", "search", postgresql_using="gin"),
    Index("flows_tags", "tags", postgresql_using="gin"),
)

flow_proposals = Table(
    "flow_proposals",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("tree", JSONB, nullable=False),
    Column("source", String(20), nullable=False),
    Column("rationale", Text, nullable=False, server_default=text("''")),
    Column("status", String(20), nullable=False, server_default=text("'pending'")),
    Column("reviewer_id", UUID(as_uuid=True), nullable=True),
    Column("reviewer_name", String(200), nullable=True),
    Column("review_time", DateTime(timezone=True), nullable=True),
    Column("flow_id", UUID(as_uuid=True), nullable=True),
    Column("created_by", UUID(as_uuid=True), nullable=False),
    Column("created_by_name", String(200), nullable=True),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # Provenance of a proposal saved from an AI-built walk (source 'walk'):
    # the walk (one proposal per walk), its ticket, its technician, and the
    # path it took through the tree.
    Column("source_walk_id", UUID(as_uuid=True), nullable=True),
    Column("source_ticket_ref", String(64), nullable=True),
    Column("source_user_id", UUID(as_uuid=True), nullable=True),
    Column("source_user_name", String(200), nullable=True),
    Column("walked_path", JSONB, nullable=True),
    PrimaryKeyConstraint("account_id", "id", name="flow_proposals_pkey"),
    ForeignKeyConstraint(
        ["account_id", "flow_id"],
        ["walks.flows.account_id", "walks.flows.id"],
        name="flow_proposals_flow_fkey",
        ondelete="RESTRICT",
    ),
    ForeignKeyConstraint(
        ["account_id", "source_walk_id"],
        ["walks.l1_walk_sessions.account_id", "walks.l1_walk_sessions.id"],
        name="flow_proposals_source_walk_fkey",
        ondelete="RESTRICT",
        use_alter=True,  # walks refer to proposals too: a cycle, added after both tables
    ),
    CheckConstraint("source IN ('user', 'ai_analysis', 'walk')", name="flow_proposals_source"),
    CheckConstraint("(source = 'walk') = (source_walk_id IS NOT NULL)", name="flow_proposals_walk_source"),
    CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="flow_proposals_status"),
    Index("flow_proposals_recent", "account_id", text("create_time DESC"), text("id DESC")),
    Index("flow_proposals_by_flow", "account_id", "flow_id"),  # under the foreign key
    # One proposal per walk; also under the foreign key.
    Index("flow_proposals_by_source_walk", "account_id", "source_walk_id", unique=True),
)

l1_walk_sessions = Table(
    "l1_walk_sessions",
    metadata,
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("created_by_user_id", UUID(as_uuid=True), nullable=False),
    Column("created_by_name", String(200), nullable=True),
    Column("acting_as", String(30), nullable=True),
    Column("ticket_ref", String(64), nullable=False),
    Column("ticket_kind", String(10), nullable=False),
    Column("session_kind", String(20), nullable=False),
    Column("flow_id", UUID(as_uuid=True), nullable=True),
    Column("flow_proposal_id", UUID(as_uuid=True), nullable=True),
    # Beyond the reference model: the tree walked (a snapshot, so a flow's
    # new version never changes a walk in progress), its version, and the
    # session an escalation created.
    Column("tree", JSONB, nullable=True),
    Column("flow_version", Integer, nullable=True),
    Column("escalation_session_id", UUID(as_uuid=True), nullable=True),
    # The request id of the walk's escalation, random and set when escalation
    # starts (from then on the walk takes no more steps): retries re-send it,
    # and nobody can compute it in advance.
    Column("escalation_request_id", UUID(as_uuid=True), nullable=True),
    Column("current_node_id", String(100), nullable=True),
    Column("walked_path", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("walk_notes", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("status", String(20), nullable=False, server_default=text("'active'")),
    Column("resolution_summary", Text, nullable=True),
    Column("helpful", Boolean, nullable=True),
    Column("escalation_reason", Text, nullable=True),
    Column("escalation_reason_category", String(30), nullable=True),
    Column("start_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("last_step_time", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("end_time", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("account_id", "id", name="l1_walk_sessions_pkey"),
    ForeignKeyConstraint(
        ["account_id", "flow_id"],
        ["walks.flows.account_id", "walks.flows.id"],
        name="l1_walk_sessions_flow_fkey",
        ondelete="RESTRICT",
    ),
    ForeignKeyConstraint(
        ["account_id", "flow_proposal_id"],
        ["walks.flow_proposals.account_id", "walks.flow_proposals.id"],
        name="l1_walk_sessions_flow_proposal_fkey",
        ondelete="RESTRICT",
    ),
    CheckConstraint("ticket_kind IN ('psa', 'internal')", name="ck_l1_walk_sessions_ticket_kind"),
    CheckConstraint(
        "session_kind IN ('flow', 'proposal', 'adhoc', 'ai_build')", name="ck_l1_walk_sessions_session_kind"
    ),
    CheckConstraint(
        "status IN ('active', 'resolved', 'escalated', 'abandoned')", name="ck_l1_walk_sessions_status"
    ),
    CheckConstraint(
        "(session_kind = 'flow' AND flow_id IS NOT NULL AND flow_proposal_id IS NULL) "
        "OR (session_kind = 'proposal' AND flow_proposal_id IS NOT NULL AND flow_id IS NULL) "
        "OR (session_kind IN ('adhoc', 'ai_build') AND flow_id IS NULL AND flow_proposal_id IS NULL)",
        name="ck_l1_walk_sessions_target_consistency",
    ),
    Index(
        "l1_walk_sessions_active_by_last_step",
        "account_id",
        "last_step_time",
        postgresql_where=text("status = 'active'"),
    ),
    Index("l1_walk_sessions_by_ticket", "account_id", "ticket_ref", text("start_time DESC")),
    Index("l1_walk_sessions_recent", "account_id", text("start_time DESC"), text("id DESC")),
    Index(
        "l1_walk_sessions_active_by_user_ticket",
        "account_id",
        "created_by_user_id",
        "ticket_ref",
        postgresql_where=text("status = 'active'"),
    ),
    # Under the foreign keys (a delete of a flow or proposal looks for walks).
    # Also the flow statistics' index: a flow's walks by version, with what
    # the counts read (no visit to the table).
    Index(
        "l1_walk_sessions_by_flow",
        "account_id",
        "flow_id",
        "flow_version",
        postgresql_include=["status", "start_time", "end_time", "current_node_id"],
    ),
    Index("l1_walk_sessions_by_flow_proposal", "account_id", "flow_proposal_id"),
)

# Steps taken from each node of a flow version, counted as walks advance (a
# step back takes its count back): how many walks passed through a node,
# without reading every walk's path.
flow_node_passes = Table(
    "flow_node_passes",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("flow_id", UUID(as_uuid=True), nullable=False),
    Column("flow_version", Integer, nullable=False),
    Column("node_id", String(100), nullable=False),
    Column("passes", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("account_id", "flow_id", "flow_version", "node_id", name="flow_node_passes_pkey"),
    ForeignKeyConstraint(
        ["account_id", "flow_id"],
        ["walks.flows.account_id", "walks.flows.id"],
        name="flow_node_passes_flow_fkey",
        ondelete="CASCADE",
    ),
)
