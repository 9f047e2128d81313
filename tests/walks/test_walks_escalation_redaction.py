"""What L1 wrote on a walk reaches the escalated session redacted: facts and
problem, through the real walks service and a sessions service standing in."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import cast

from flowpilot.api.v1 import tickets_pb2
from flowpilot.walks.v1 import walks_pb2 as pb

from services.walks import escalation
from services.walks.storage import WalkRow
from tests.walks.test_walks_escalation import Stack, stack

__all__ = ["stack"]  # the fixture, shared with the escalation tests

NOTE = "The local admin password is Winter2024!Pw and the wifi passphrase is CoffeeShop99"


async def test_walk_notes_and_reason_reach_the_session_redacted(stack: Stack) -> None:
    account, user = uuid.uuid4(), uuid.uuid4()
    md = stack.md(account, user=user)
    start = pb.StartWalkRequest(
        ticket_ref="CW #48213", ticket_kind=tickets_pb2.TICKET_KIND_PSA, kind=pb.WALK_KIND_ADHOC
    )
    walk = (await stack.stub.StartWalk(start, metadata=md)).walk
    await stack.stub.AddWalkNote(pb.AddWalkNoteRequest(name=walk.name, text=NOTE), metadata=md)
    await stack.stub.AddWalkNote(
        pb.AddWalkNoteRequest(name=walk.name, text="Printer at 10.0.0.50 answers ping"), metadata=md
    )
    await stack.stub.EscalateWalk(
        pb.EscalateWalkRequest(
            name=walk.name,
            reason="VPN fails; user says pw: Hunter22x",
            category=pb.ESCALATION_CATEGORY_NEEDS_ACCESS,
        ),
        metadata=md,
    )
    sent = stack.sessions.calls[-1]
    everything = sent.session.problem + "\n".join(f.text for f in sent.facts)
    for secret in ("Winter2024!Pw", "CoffeeShop99", "Hunter22x"):
        assert secret not in everything
    facts = [f.text for f in sent.facts]
    assert "L1 note: The local admin password is [REDACTED] and the wifi passphrase is [REDACTED]" in facts
    assert "L1 note: Printer at 10.0.0.50 answers ping" in facts  # innocent text unchanged
    # The walk itself keeps what L1 wrote.
    kept = await stack.stub.GetWalk(pb.GetWalkRequest(name=walk.name), metadata=md)
    assert NOTE in [n.text for n in kept.notes]


def test_a_fact_is_cut_after_redaction() -> None:
    """A note at the fact limit with a password at its end: redacted first, so
    the cut never leaves part of the secret."""
    note = "x" * (escalation.MAX_FACT - 30) + " password=Sup3rS3cret!Longer"
    walk = cast(WalkRow, SimpleNamespace(walked_path=[], walk_notes=[{"text": note}]))
    facts = escalation.facts_for(walk, None, reason="r", category="other")
    assert all("Sup3r" not in f and len(f) <= escalation.MAX_FACT for f in facts)
