"""Realistic data for the benchmark, written directly in SQL as the administrator.

50 accounts; for the measured account 2,000 sessions with 100,000 facts,
500 script templates, 200 drafts, 50 flows and 5,000 walks; the other
accounts get a smaller share each so that RLS has neighbours to hide.
Two extra sessions carry 10,000 and 1,000,000 facts (list-facts at scale),
and one extra account 100,000 drafts (the review badge at scale).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

CHAIN = 400  # nodes in the benchmark flow: a long chain so walks can keep advancing


def chain_tree() -> dict[str, object]:
    nodes: list[dict[str, object]] = []
    for i in range(CHAIN):
        nodes.append(
            {
                "id": f"n{i}",
                "kind": "question",
                "text": f"Step {i}: is it fixed?",
                "options": [
                    {"label": "No", "next": f"n{i + 1}" if i + 1 < CHAIN else "end"},
                    {"label": "Yes", "next": "done"},
                ],
            }
        )
    nodes.append({"id": "done", "kind": "resolution", "text": "Fixed", "options": []})
    nodes.append({"id": "end", "kind": "escalation", "text": "Escalate", "options": []})
    return {"root": "n0", "nodes": nodes}


@dataclass
class Seeded:
    account: uuid.UUID
    user: uuid.UUID
    sessions: list[uuid.UUID] = field(default_factory=list)
    session_10k: uuid.UUID = field(default_factory=uuid.uuid4)
    session_1m: uuid.UUID = field(default_factory=uuid.uuid4)
    walks: list[uuid.UUID] = field(default_factory=list)
    badge_account: uuid.UUID = field(default_factory=uuid.uuid4)
    others: list[uuid.UUID] = field(default_factory=list)


async def _account(conn: AsyncConnection, account: uuid.UUID, user: uuid.UUID, *, sessions: int, facts: int,
                   templates: int, drafts: int, flows: int, walks: int) -> None:  # fmt: skip
    params = {"a": account, "u": user}
    await conn.execute(
        text(f"""
        INSERT INTO sessions.ai_sessions (account_id, id, ticket_ref, ticket_kind, title, problem, created_by, create_time)
        SELECT :a, gen_random_uuid(), 'CW #' || g, 'psa', 'Session ' || g, 'Problem statement number ' || g, :u,
               now() - g * interval '1 minute'
        FROM generate_series(1, {sessions}) g"""),
        params,
    )
    await conn.execute(
        text(f"""
        INSERT INTO sessions.session_facts (account_id, id, session_id, text, source, created_by, create_time)
        SELECT :a, gen_random_uuid(), s.id, 'Fact ' || g || ' about the problem', 'user', :u, now() - g * interval '1 second'
        FROM (SELECT id, row_number() OVER () AS n FROM sessions.ai_sessions WHERE account_id = :a) s
        JOIN generate_series(1, {facts}) g ON (g % {sessions}) + 1 = s.n"""),
        params,
    )
    await conn.execute(
        text(f"""
        INSERT INTO library.script_templates (account_id, id, name, description, language, body, created_by, usage_count)
        SELECT :a, gen_random_uuid(), 'Template ' || g || (CASE WHEN g % 10 = 0 THEN ' spooler restart' ELSE ' disk cleanup' END),
               'Does useful thing ' || g, 'powershell',
               'Restart-Service ' || (CASE WHEN g % 3 = 0 THEN 'spooler' ELSE 'wuauserv' END) || ' # ' || g, :u, g % 50
        FROM generate_series(1, {templates}) g"""),
        params,
    )
    await conn.execute(
        text(f"""
        INSERT INTO library.draft_templates (account_id, id, script_body, language, status, created_by, review_time)
        SELECT :a, gen_random_uuid(), 'echo ' || g, 'bash', (ARRAY['pending','approved','rejected'])[1 + g % 3], :u,
               CASE WHEN g % 3 = 0 THEN NULL ELSE now() END
        FROM generate_series(1, {drafts}) g"""),
        params,
    )
    tree = json.dumps(chain_tree())
    await conn.execute(
        text(f"""
        INSERT INTO walks.flows (account_id, id, name, tree, status, created_by)
        SELECT :a, gen_random_uuid(), 'Flow ' || g, CAST(:tree AS jsonb), 'published', :u
        FROM generate_series(1, {flows}) g"""),
        {**params, "tree": tree},
    )
    await conn.execute(
        text(f"""
        INSERT INTO walks.l1_walk_sessions (account_id, id, created_by_user_id, ticket_ref, ticket_kind, session_kind,
                                            flow_id, tree, flow_version, current_node_id, start_time, last_step_time)
        SELECT :a, gen_random_uuid(), :u, 'T-' || g, 'psa', 'flow', f.id, f.tree, 1, 'n0',
               now() - g * interval '1 second', now()
        FROM generate_series(1, {walks}) g
        CROSS JOIN LATERAL (SELECT id, tree FROM walks.flows WHERE account_id = :a ORDER BY id LIMIT 1) f"""),
        params,
    )


async def seed(conn: AsyncConnection, *, accounts: int = 50) -> Seeded:
    measured = Seeded(account=uuid.uuid4(), user=uuid.uuid4())
    await _account(
        conn,
        measured.account,
        measured.user,
        sessions=2000,
        facts=100_000,
        templates=500,
        drafts=200,
        flows=50,
        walks=5000,
    )
    for _ in range(accounts - 1):
        other = uuid.uuid4()
        measured.others.append(other)
        await _account(
            conn, other, uuid.uuid4(), sessions=100, facts=2000, templates=20, drafts=10, flows=2, walks=50
        )
    for session_id, facts in ((measured.session_10k, 10_000), (measured.session_1m, 1_000_000)):
        await conn.execute(
            text("""
            INSERT INTO sessions.ai_sessions (account_id, id, ticket_ref, ticket_kind, title, created_by)
            VALUES (:a, :s, 'CW #scale', 'psa', 'Scale', :u)"""),
            {"a": measured.account, "s": session_id, "u": measured.user},
        )
        await conn.execute(
            text(f"""
            INSERT INTO sessions.session_facts (account_id, id, session_id, text, source, created_by, create_time)
            SELECT :a, gen_random_uuid(), :s, 'Scale fact ' || g, 'user', :u, now() - g * interval '1 millisecond'
            FROM generate_series(1, {facts}) g"""),
            {"a": measured.account, "s": session_id, "u": measured.user},
        )
    await conn.execute(
        text("""
        INSERT INTO library.draft_templates (account_id, id, script_body, language, status, created_by, review_time)
        SELECT :a, gen_random_uuid(), 'echo ' || g, 'bash', CASE WHEN g % 5 = 0 THEN 'pending' ELSE 'approved' END, :u,
               CASE WHEN g % 5 = 0 THEN NULL ELSE now() END
        FROM generate_series(1, 100000) g"""),
        {"a": measured.badge_account, "u": measured.user},
    )
    rows = await conn.execute(
        text(
            "SELECT id FROM sessions.ai_sessions WHERE account_id = :a AND ticket_ref <> 'CW #scale' ORDER BY id LIMIT 200"
        ),
        {"a": measured.account},
    )
    measured.sessions = list(rows.scalars())
    rows = await conn.execute(
        text("SELECT id FROM walks.l1_walk_sessions WHERE account_id = :a ORDER BY id LIMIT 200"),
        {"a": measured.account},
    )
    measured.walks = list(rows.scalars())
    await conn.execute(text("ANALYZE"))
    return measured
