"""The account's knowledge in the copilot's context: every reference fits
every tier's budget (so every one is cited), the offline copilot cites them
deterministically, and a secret in one never reaches the model."""

from __future__ import annotations

from services.core.ai import AI, ChatRequest, Preferences, Reference, ReplyDone, SessionContext, TextDelta
from services.core.ai.offline import OfflineBackend
from services.core.ai.prompt import CHARS_PER_TOKEN, CHAT_BUDGET_TOKENS, KNOWLEDGE_SHARE, chat_context
from services.core.ai.types import ChatEvent, Prompts, Tier

SESSION = SessionContext(ticket_ref="CW #1", title="VPN drops", problem="The tunnel drops hourly.")
REFERENCES = (
    *tuple(Reference(name=f"sessions/{n}", title=f"Resolved {n}", text="x" * 50000) for n in range(3)),
    Reference(name="scriptTemplates/t", title="Reset adapter", text="Restarts the adapter."),
)


def test_every_reference_fits_every_tier_clipped_to_its_share() -> None:
    for tier, budget in CHAT_BUDGET_TOKENS.items():
        request = ChatRequest(session=SESSION, history=(), question="?", references=REFERENCES)
        seen, _, _ = chat_context(request, budget_tokens=budget)
        knowledge = seen[seen.index("From this account's own knowledge") :]
        assert len(knowledge) <= budget * KNOWLEDGE_SHARE * CHARS_PER_TOKEN + 300, tier
        for reference in REFERENCES:
            assert f"[{reference.name}] {reference.title}" in seen


def test_without_references_the_context_is_as_before() -> None:
    request = ChatRequest(session=SESSION, history=(), question="?")
    assert "own knowledge" not in chat_context(request, budget_tokens=12_000)[0]


async def _reply(backend: OfflineBackend, request: ChatRequest) -> str:
    text = ""
    async for event in backend.chat(request, tier=Tier.FAST, prompts=Prompts()):
        if isinstance(event, TextDelta):
            text += event.text
    return text


async def test_the_offline_copilot_cites_every_reference_in_order() -> None:
    request = ChatRequest(session=SESSION, history=(), question="what now?", references=REFERENCES)
    first, second = await _reply(OfflineBackend(), request), await _reply(OfflineBackend(), request)
    assert first == second
    positions = [first.index(f"[{r.name}] {r.title}") for r in REFERENCES]
    assert positions == sorted(positions)


class Recording(OfflineBackend):
    def __init__(self) -> None:
        self.seen: list[ChatRequest] = []

    async def chat(self, request: ChatRequest, *, tier: Tier, prompts: Prompts):  # type: ignore[no-untyped-def,override]
        self.seen.append(request)
        events: list[ChatEvent] = [TextDelta("ok"), ReplyDone(model="rec")]
        for event in events:
            yield event


async def test_a_secret_in_a_reference_never_reaches_the_model() -> None:
    backend = Recording()
    secret = Reference(
        name="sessions/s", title="Old fix", text="The service password is Hunter2-Secret!9 and it expired"
    )
    request = ChatRequest(session=SESSION, history=(), question="?", references=(secret,))
    async for _ in await AI(backend).chat(request, Preferences(redact=True)):
        pass
    [sent] = backend.seen
    assert "Hunter2-Secret!9" not in sent.references[0].text and "expired" in sent.references[0].text
    assert sent.references[0].name == "sessions/s"
