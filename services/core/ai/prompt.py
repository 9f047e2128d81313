"""Context for a model, built within a token budget, newest first.

The ticket, title and problem always go in (the problem truncated if it must
be). Then facts and task-lane items are added newest first while they fit;
what does not fit is counted, not silently dropped, so the model knows it
sees a window. Tokens are estimated at four characters each, which errs on
the generous side for English and code.
"""

from __future__ import annotations

from services.core.ai.types import ChatRequest, FixView, LaneView, Reference, SessionContext, Tier, Turn

CHARS_PER_TOKEN = 4
HEADER_SHARE = 0.25  # at most a quarter of the budget for the problem statement


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // CHARS_PER_TOKEN)


def _clip(text: str, limit_chars: int) -> str:
    return text if len(text) <= limit_chars else text[: max(0, limit_chars - 15)] + " …[truncated]"


def session_context(ctx: SessionContext, *, budget_tokens: int) -> str:
    budget = budget_tokens * CHARS_PER_TOKEN
    parts = [
        f"Ticket: {ctx.ticket_ref}",
        f"Title: {ctx.title}",
        f"Status: {ctx.status}",
        "Problem:",
        _clip(ctx.problem or "(not stated)", int(budget * HEADER_SHARE)),
    ]
    if ctx.resolution_summary:
        parts.append(f"Resolution summary: {_clip(ctx.resolution_summary, 2000)}")
    if ctx.escalation_reason:
        parts.append(f"Escalation reason: {_clip(ctx.escalation_reason, 2000)}")
    if ctx.started_by:
        parts.append(f"Started by: {ctx.started_by}")
    if ctx.closed_by:
        parts.append(f"Closed by: {ctx.closed_by}")
    parts += [_fix_line(fix) for fix in ctx.fixes[-10:]]
    if ctx.walked_path:
        parts.append("Path walked by the L1 technician: " + " → ".join(ctx.walked_path))
    used = sum(len(p) + 1 for p in parts)

    def newest_first(items: list[str], heading: str) -> None:
        nonlocal used
        kept: list[str] = []
        for item in reversed(items):
            if used + len(item) + 1 > budget:
                break
            kept.append(item)
            used += len(item) + 1
        omitted = len(items) - len(kept)
        if kept or omitted:
            parts.append(
                heading + (f" (newest first; {omitted} older omitted)" if omitted else " (newest first)")
            )
            parts.extend(kept)

    newest_first([f"- {fact}" for fact in ctx.facts], "What we know:")
    newest_first([_lane_line(item) for item in ctx.lane], "Task lane:")
    newest_first([f"- {e.at} {e.text}" for e in ctx.timeline], f"Timeline (times in {ctx.time_zone}):")
    return "\n".join(parts)


# How a fix's status reads to a model: it must never present a fix that was
# only suggested, or one that was rejected, as applied.
_FIX_STATUS = {
    "accepted": "ACCEPTED (applied)",
    "rejected": "REJECTED (ruled out, not applied)",
    "proposed": "SUGGESTED ONLY (never accepted, not applied)",
}


def _fix_line(fix: FixView) -> str:
    line = f"Suggested fix, {_FIX_STATUS.get(fix.status, fix.status)}: {fix.title}"
    if fix.decided_by:
        line += f" — decided by {fix.decided_by} on {fix.decided_at}"
    if fix.reject_reason:
        line += f" — reason: {_clip(fix.reject_reason, 500)}"
    if fix.steps:
        line += f". Steps: {_clip('; '.join(fix.steps), 2000)}"
    return line


def _lane_line(item: LaneView) -> str:
    line = f"- [{item.status}{' ' + item.at if item.at else ''}] {item.kind}: {item.title}"
    if item.detail:
        line += f" — {_clip(item.detail, 1000)}"
    if item.script_body:
        line += f"\n  script ({item.script_language}):\n  {_clip(item.script_body, 3000)}"
    if item.output:
        line += f"\n  output: {_clip(item.output, 2000)}"
    return line


# --- the copilot conversation -----------------------------------------------

# A chat's context per model tier, in tokens: the session first (at most
# SESSION_SHARE of it, never dropped), then the new message, then as much of
# the conversation as still fits, newest first.
CHAT_BUDGET_TOKENS = {Tier.FAST: 12_000, Tier.DEEP: 48_000}
SESSION_SHARE = 0.5


def conversation_window(history: tuple[Turn, ...], *, budget_tokens: int) -> tuple[tuple[Turn, ...], int]:
    """(the newest turns that fit ``budget_tokens``, oldest first; how many
    older ones were left out)."""
    budget = budget_tokens * CHARS_PER_TOKEN
    kept: list[Turn] = []
    used = 0
    for turn in reversed(history):
        if used + len(turn.text) + 16 > budget:
            break
        kept.append(turn)
        used += len(turn.text) + 16
    return tuple(reversed(kept)), len(history) - len(kept)


# The account's knowledge (similar resolved sessions, library templates): at
# most this share of a chat's budget, split evenly, so that every reference
# given fits (and can be cited) in every tier.
KNOWLEDGE_SHARE = 0.15
MAX_REFERENCE_CHARS = 1200


def knowledge_context(references: tuple[Reference, ...], *, budget_tokens: int) -> str:
    """The references, best first, each clipped to its even share of ``budget_tokens``."""
    if not references:
        return ""
    each = min(MAX_REFERENCE_CHARS, budget_tokens * CHARS_PER_TOKEN // len(references))
    lines = [
        "From this account's own knowledge (cite what you rely on by its name in brackets, "
        "e.g. [sessions/…]; these are other tickets, not this one):"
    ]
    lines += [_clip(f"- [{r.name}] {r.title}: {r.text}", each) for r in references]
    return "\n".join(lines)


def chat_context(request: ChatRequest, *, budget_tokens: int) -> tuple[str, tuple[Turn, ...], int]:
    """(the session and the account's knowledge as the model sees them, the
    conversation turns kept, how many older ones were left out) within
    ``budget_tokens``."""
    session = session_context(request.session, budget_tokens=int(budget_tokens * SESSION_SHARE))
    knowledge = knowledge_context(request.references, budget_tokens=int(budget_tokens * KNOWLEDGE_SHARE))
    if knowledge:
        session += "\n\n" + knowledge
    left = budget_tokens - estimate_tokens(session) - estimate_tokens(request.question)
    turns, omitted = conversation_window(request.history, budget_tokens=max(0, left))
    return session, turns, omitted
