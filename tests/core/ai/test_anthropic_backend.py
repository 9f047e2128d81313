"""The Anthropic path through the real SDK, with recorded API responses."""

from __future__ import annotations

import importlib

import httpx2
import pytest

from services.core.ai import (
    AI,
    DEFAULT_PROMPT_VERSION,
    ChatRequest,
    Event,
    FixView,
    Preferences,
    Prompt,
    Prompts,
    SessionContext,
)
from services.core.ai.anthropic_backend import (
    CHAT_SYSTEM,
    CHAT_TOOLS,
    SYSTEM,
    TASK_FIX,
    TASK_NOTE,
    TASK_PACKAGE,
    TASK_TEMPLATIZE,
    TASK_TREE,
    AnthropicBackend,
)
from services.core.errors import FailedPrecondition, Internal, Unavailable
from tests.core.ai.transport import Replay

DEFAULTS = importlib.import_module("migrations.versions.settings.0004_prompts").DEFAULTS

CTX = SessionContext(
    ticket_ref="CW #48213",
    title="Outlook keeps prompting",
    problem="Outlook asks for credentials every few minutes.",
    facts=("User replaced phone on Monday", "MFA registration lists old phone"),
)


def _ai(replay: Replay, *, max_retries: int = 2, timeout: float = 5.0) -> AI:
    backend = AnthropicBackend(
        api_key="test-key",
        fast_model="claude-haiku-5-5",
        deep_model="claude-sonnet-5-5",
        max_retries=max_retries,
        timeout_seconds=timeout,
        http_client=replay.client(),
    )
    return AI(backend, deep_above_tokens=6000)


async def test_tool_use_output_becomes_a_validated_fix() -> None:
    replay = Replay([(200, "fix_tool_use.json")])
    fix = await _ai(replay).suggest_fix(CTX, Preferences())
    assert fix.title == "Re-register the user's MFA method"
    assert fix.steps[0].startswith("Remove the old phone")
    assert fix.confidence == 0.82
    assert fix.model == "claude-haiku-5-5-20260901"
    sent = replay.requests[0]
    assert sent["model"] == "claude-haiku-5-5"  # auto tier, small context: fast
    assert sent["tool_choice"] == {"type": "tool", "name": "propose_fix"}
    schema = sent["tools"][0]["input_schema"]
    assert set(schema["required"]) >= {"title", "summary_markdown", "steps", "confidence"}
    assert "model" not in schema["properties"]
    prompt = sent["messages"][0]["content"]
    assert "MFA registration lists old phone" in prompt and "CW #48213" in prompt


async def test_tiers_follow_the_setting_and_the_task() -> None:
    replay = Replay([(200, "fix_tool_use.json"), (200, "tree_tool_use.json"), (200, "fix_tool_use.json")])
    ai = _ai(replay)
    await ai.suggest_fix(CTX, Preferences(tier="deep"))
    tree = await ai.build_decision_tree("VPN drive mapping fails", Preferences(tier="auto"))
    await ai.suggest_fix(CTX.map_text(lambda t: t * 2000), Preferences(tier="auto"))
    assert [r["model"] for r in replay.requests] == [
        "claude-sonnet-5-5",
        "claude-sonnet-5-5",
        "claude-sonnet-5-5",
    ]
    assert tree.root == "q1" and len(tree.nodes) == 5


async def test_large_context_is_cut_to_the_budget_newest_first() -> None:
    facts = tuple(f"fact number {i} " + "x" * 400 for i in range(1000))
    replay = Replay([(200, "fix_tool_use.json")])
    await _ai(replay).suggest_fix(
        SessionContext(ticket_ref="CW #1", title="t", problem="p", facts=facts), Preferences(tier="fast")
    )
    prompt = replay.requests[0]["messages"][0]["content"]
    assert len(prompt) <= 12_000 * 4 + 2000
    assert "fact number 999 " in prompt and "fact number 0 " not in prompt
    assert "older omitted" in prompt


async def test_malformed_output_is_a_clear_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        await _ai(Replay([(200, "fix_malformed.json")])).suggest_fix(CTX, Preferences())
    assert caught.value.reason == "MODEL_OUTPUT_INVALID"
    with pytest.raises(FailedPrecondition) as caught:
        await _ai(Replay([(200, "text_only.json")])).suggest_fix(CTX, Preferences())
    assert caught.value.reason == "MODEL_OUTPUT_INVALID"


async def test_rate_limit_and_overload_are_retried() -> None:
    replay = Replay([(429, "rate_limited.json"), (529, "overloaded.json"), (200, "fix_tool_use.json")])
    fix = await _ai(replay, max_retries=2).suggest_fix(CTX, Preferences())
    assert fix.title.startswith("Re-register")
    assert len(replay.requests) == 3


async def test_still_overloaded_after_retries_is_unavailable() -> None:
    replay = Replay([(529, "overloaded.json")] * 3)
    with pytest.raises(Unavailable) as caught:
        await _ai(replay, max_retries=2).suggest_fix(CTX, Preferences())
    assert caught.value.reason == "MODEL_UNAVAILABLE"
    assert len(replay.requests) == 3


async def test_timeout_is_unavailable() -> None:
    replay = Replay([httpx2.ReadTimeout("timed out"), httpx2.ReadTimeout("timed out")])
    with pytest.raises(Unavailable):
        await _ai(replay, max_retries=1).suggest_fix(CTX, Preferences())
    assert len(replay.requests) == 2


async def test_rejected_request_is_internal_with_a_reason() -> None:
    with pytest.raises(Internal) as caught:
        await _ai(Replay([(400, "invalid_request.json")])).suggest_fix(CTX, Preferences())
    assert caught.value.reason == "MODEL_REQUEST_REJECTED"


HISTORY = SessionContext(
    ticket_ref="CW #48213",
    title="Outlook keeps prompting",
    problem="Outlook asks for credentials every few minutes.",
    status="resolved",
    fixes=(
        FixView(
            title="Clear the Teams cache",
            status="rejected",
            decided_by="Dana Engineer",
            decided_at="2026-12-01 13:10 CET",
            reject_reason="made no difference",
        ),
        FixView(
            title="Re-register MFA",
            status="accepted",
            steps=("Remove the old phone",),
            decided_by="Sam Lead",
            decided_at="2026-12-01 13:30 CET",
        ),
        FixView(title="Reinstall Office", status="proposed", proposed_at="2026-12-01 13:40 CET"),
    ),
    timeline=(Event(at="2026-12-01 13:00 CET", text="Session started by Dana Engineer"),),
    time_zone="Europe/Berlin",
    resolution_summary="Re-registered MFA",
)


async def test_the_model_is_told_what_was_accepted_rejected_and_only_suggested() -> None:
    replay = Replay([(200, "note_tool_use.json")])
    note = await _ai(replay).write_resolution_note(HISTORY, Preferences())
    prompt = replay.requests[0]["messages"][0]["content"]
    assert (
        "Suggested fix, ACCEPTED (applied): Re-register MFA — decided by Sam Lead on 2026-12-01 13:30 CET"
        in prompt
    )
    assert "Suggested fix, REJECTED (ruled out, not applied): Clear the Teams cache" in prompt
    assert "reason: made no difference" in prompt
    assert "Suggested fix, SUGGESTED ONLY (never accepted, not applied): Reinstall Office" in prompt
    assert "Timeline (times in Europe/Berlin):" in prompt and "Session started by Dana Engineer" in prompt
    assert "never present a SUGGESTED ONLY fix as applied" in prompt
    # What the model wrote is redacted before anyone sees it.
    assert "Winter2024!Pw" not in note.text and "Fix applied" in note.text


OVERRIDES = Prompts(
    {
        "system": Prompt("You are terse.", 3),
        "task.fix": Prompt("Fix it, in one step.", 2),
        "task.note": Prompt("Write the note in {format}, as a haiku.", 4),
    }
)


async def test_an_accounts_prompts_are_what_the_model_is_sent() -> None:
    replay = Replay([(200, "fix_tool_use.json"), (200, "note_tool_use.json"), (200, "fix_tool_use.json")])
    ai = _ai(replay)
    await ai.suggest_fix(CTX, Preferences(prompts=OVERRIDES))
    await ai.write_resolution_note(CTX, Preferences(fmt="plain", prompts=OVERRIDES))
    await ai.suggest_fix(CTX, Preferences())  # no prompts read: the built-in texts
    fix, note, builtin = replay.requests
    assert fix["system"] == "You are terse." and note["system"] == "You are terse."
    assert fix["messages"][0]["content"].startswith("Fix it, in one step.\n\nTicket: CW #48213")
    # {format} is the account's note format, in an override as in the default.
    assert note["messages"][0]["content"].startswith("Write the note in plain, as a haiku.\n\n")
    assert builtin["system"] == SYSTEM
    assert builtin["messages"][0]["content"].startswith(TASK_FIX + "\n\n")


async def test_the_chat_prompt_and_tool_descriptions_are_the_accounts() -> None:
    replay = Replay([(200, "chat_stream_tool_use.sse")])
    prompts = Prompts(
        {
            "task.chat": Prompt("You are the copilot; answer in French.", 2),
            "tool.propose_fix": Prompt("Suggest a fix only when sure.", 5),
        }
    )
    request = ChatRequest(session=CTX, history=(), question="What next?")
    _ = [event async for event in await _ai(replay).chat(request, Preferences(prompts=prompts))]
    [sent] = replay.requests
    assert sent["system"].startswith("You are the copilot; answer in French.\n\n")
    descriptions = {tool["name"]: tool["description"] for tool in sent["tools"]}
    assert descriptions["propose_fix"] == "Suggest a fix only when sure."
    assert descriptions["propose_fact"] == CHAT_TOOLS[0]["description"]  # not overridden: built in


def test_the_built_in_texts_are_the_shipped_defaults_verbatim() -> None:
    """What the backend falls back to is version 1 of every prompt."""
    shipped = {slug: text for slug, _, text in DEFAULTS}
    built_in = {
        "system": SYSTEM,
        "task.fix": TASK_FIX,
        "task.note": TASK_NOTE,
        "task.package": TASK_PACKAGE,
        "task.templatize": TASK_TEMPLATIZE,
        "task.tree": TASK_TREE,
        "task.chat": CHAT_SYSTEM,
    } | {f"tool.{tool['name']}": tool["description"] for tool in CHAT_TOOLS}
    assert shipped == built_in
    assert Prompts().version("task.note") == DEFAULT_PROMPT_VERSION == 1
