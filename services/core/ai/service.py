"""The AI facade the services call: redaction, tiers, the per-account limit on
model calls, and backend selection."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core import metrics
from services.core.ai.prompt import estimate_tokens, session_context
from services.core.ai.redaction import redact
from services.core.ai.types import (
    ChatEvent,
    ChatRequest,
    DecisionTree,
    Document,
    FixSuggestion,
    Prompts,
    ProposalDraft,
    Proposed,
    Reference,
    ReplyDone,
    ScriptDraft,
    SessionContext,
    Templatized,
    TextDelta,
    Tier,
    Turn,
)
from services.core.auth import current_principal
from services.core.errors import FlowPilotError, ResourceExhausted
from services.core.ratelimit import TokenBuckets

T = TypeVar("T")


class Backend(Protocol):
    name: str

    async def suggest_fix(self, ctx: SessionContext, *, tier: Tier, prompts: Prompts) -> FixSuggestion: ...
    async def write_resolution_note(
        self, ctx: SessionContext, *, fmt: str, tier: Tier, prompts: Prompts
    ) -> Document: ...
    async def write_escalation_package(
        self, ctx: SessionContext, *, fmt: str, tier: Tier, prompts: Prompts
    ) -> Document: ...
    async def templatize_script(
        self, script: ScriptDraft, *, tier: Tier, prompts: Prompts
    ) -> Templatized: ...
    async def build_decision_tree(self, problem: str, *, tier: Tier, prompts: Prompts) -> DecisionTree: ...
    def chat(self, request: ChatRequest, *, tier: Tier, prompts: Prompts) -> AsyncIterator[ChatEvent]: ...


class AIConfig(BaseSettings):
    """``ANTHROPIC_API_KEY`` selects the Anthropic backend; without it, offline."""

    model_config = SettingsConfigDict(env_prefix="FLOWPILOT_AI_", extra="ignore")

    fast_model: str = "claude-haiku-5-5"
    deep_model: str = "claude-sonnet-5-5"
    timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    max_retries: int = Field(default=2, ge=0, le=10)
    # `auto` goes deep above this many context tokens.
    deep_above_tokens: int = Field(default=6000, ge=0)
    # Model calls one account may make, per replica: a steady rate, and how
    # many at once after a quiet spell. 0 calls per minute turns the limit off.
    calls_per_minute: float = Field(default=60.0, ge=0)
    burst: int = Field(default=20, ge=1, le=10_000)


@dataclass(frozen=True)
class Preferences:
    """The account settings that shape an AI call, and the account's prompts."""

    redact: bool = True
    tier: str = "auto"  # auto | fast | deep
    fmt: str = "markdown"
    prompts: Prompts = field(default_factory=Prompts)


# Work that needs reasoning more than speed goes deep under `auto`.
_HARD = {"decision_tree"}


class AI:
    """Every model call of every service goes through one of these methods; each
    takes a token of the caller's account from ``limiter`` (when given) before
    anything reaches the backend, or raises RESOURCE_EXHAUSTED with a retry
    delay. The account is the current RPC's principal."""

    def __init__(
        self, backend: Backend, *, deep_above_tokens: int = 6000, limiter: TokenBuckets | None = None
    ) -> None:
        self.backend = backend
        self._deep_above = deep_above_tokens
        self._limiter = limiter

    def _spend(self) -> None:
        if self._limiter is None:
            return
        wait = self._limiter.take(current_principal().account_id)
        if wait > 0:
            metrics.AI_RATE_LIMITED.inc()
            # Whole seconds rounded up from the nanoseconds RetryInfo carries, as
            # the gateway's Retry-After is.
            seconds = max(1, -(-round(wait * 1e9) // 1_000_000_000))
            raise ResourceExhausted(
                f"too many AI requests for this account; retry in {seconds} s",
                reason="AI_RATE_LIMITED",
                metadata={
                    "retry_after_seconds": str(seconds),
                    "calls_per_minute": f"{self._limiter.per_minute:g}",
                    "burst": str(self._limiter.burst),
                },
                retry_delay=wait,
            )

    def _tier(self, prefs: Preferences, task: str, size_tokens: int) -> Tier:
        if prefs.tier in ("fast", "deep"):
            return Tier(prefs.tier)
        return Tier.DEEP if task in _HARD or size_tokens > self._deep_above else Tier.FAST

    async def _measured(self, task: str, tier: Tier, call: Awaitable[T]) -> T:
        """``call`` (one backend call), counted and timed (:meth:`_counted`)."""
        with self._counted(task, tier):
            return await call

    @contextlib.contextmanager
    def _counted(self, task: str, tier: Tier) -> Iterator[None]:
        """One backend call, counted and timed in ``flowpilot_ai_model_*`` by
        task, tier, backend and outcome (``ok`` or the error's reason)."""
        labels = (task, tier.value, self.backend.name)
        started = time.perf_counter()
        outcome = "ok"
        try:
            yield
        except FlowPilotError as error:
            outcome = error.reason
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            metrics.AI_SECONDS.labels(*labels).observe(time.perf_counter() - started)
            metrics.AI_CALLS.labels(*labels, outcome).inc()

    def _prepare(self, ctx: SessionContext, prefs: Preferences) -> SessionContext:
        return ctx.map_text(redact) if prefs.redact else ctx

    def _size(self, ctx: SessionContext) -> int:
        return estimate_tokens(session_context(ctx, budget_tokens=1_000_000))

    async def suggest_fix(self, ctx: SessionContext, prefs: Preferences) -> FixSuggestion:
        self._spend()
        ctx = self._prepare(ctx, prefs)
        tier = self._tier(prefs, "fix", self._size(ctx))
        fix = await self._measured(
            "suggest_fix", tier, self.backend.suggest_fix(ctx, tier=tier, prompts=prefs.prompts)
        )
        if prefs.redact:
            fix = fix.model_copy(
                update={
                    "title": redact(fix.title),
                    "summary_markdown": redact(fix.summary_markdown),
                    "steps": [redact(s) for s in fix.steps],
                    "rationale": redact(fix.rationale),
                }
            )
        return fix

    async def write_resolution_note(self, ctx: SessionContext, prefs: Preferences) -> Document:
        self._spend()
        ctx = self._prepare(ctx, prefs)
        tier = self._tier(prefs, "note", self._size(ctx))
        doc = await self._measured(
            "resolution_note",
            tier,
            self.backend.write_resolution_note(ctx, fmt=prefs.fmt, tier=tier, prompts=prefs.prompts),
        )
        return doc.model_copy(update={"text": redact(doc.text)}) if prefs.redact else doc

    async def write_escalation_package(self, ctx: SessionContext, prefs: Preferences) -> Document:
        self._spend()
        ctx = self._prepare(ctx, prefs)
        tier = self._tier(prefs, "package", self._size(ctx))
        doc = await self._measured(
            "escalation_package",
            tier,
            self.backend.write_escalation_package(ctx, fmt=prefs.fmt, tier=tier, prompts=prefs.prompts),
        )
        return doc.model_copy(update={"text": redact(doc.text)}) if prefs.redact else doc

    async def templatize_script(self, script: ScriptDraft, prefs: Preferences) -> Templatized:
        self._spend()
        # Redacted first: a password in a script must never become a default.
        if prefs.redact:
            script = ScriptDraft(
                body=redact(script.body), language=script.language, name_hint=script.name_hint
            )
        tier = self._tier(prefs, "templatize", estimate_tokens(script.body))
        return await self._measured(
            "templatize_script",
            tier,
            self.backend.templatize_script(script, tier=tier, prompts=prefs.prompts),
        )

    async def build_decision_tree(self, problem: str, prefs: Preferences) -> DecisionTree:
        self._spend()
        if prefs.redact:
            problem = redact(problem)
        tier = self._tier(prefs, "decision_tree", estimate_tokens(problem))
        return await self._measured(
            "decision_tree", tier, self.backend.build_decision_tree(problem, tier=tier, prompts=prefs.prompts)
        )

    async def chat(self, request: ChatRequest, prefs: Preferences) -> AsyncIterator[ChatEvent]:
        """The copilot's reply to ``request``, as a stream of events ending with
        ReplyDone (its tier filled in). The call is counted (and refused past
        the limit) here, before the stream starts; everything sent is redacted
        when ``prefs.redact``, and so is what comes back: text whole lines at a
        time (a secret is not split across deltas), proposals whole."""
        self._spend()
        if prefs.redact:
            request = ChatRequest(
                session=request.session.map_text(redact),
                history=tuple(Turn(turn.role, redact(turn.text)) for turn in request.history),
                question=redact(request.question),
                references=tuple(
                    Reference(r.name, redact(r.title), redact(r.text)) for r in request.references
                ),
            )
        size = (
            self._size(request.session)
            + sum(estimate_tokens(turn.text) for turn in request.history)
            + estimate_tokens(request.question)
            + sum(estimate_tokens(r.text) for r in request.references)
        )
        tier = self._tier(prefs, "chat", size)
        return self._chat(request, tier, prefs.prompts, redacting=prefs.redact)

    async def _chat(
        self, request: ChatRequest, tier: Tier, prompts: Prompts, *, redacting: bool
    ) -> AsyncIterator[ChatEvent]:
        held = ""  # text of the current line, until it ends (when redacting)
        with self._counted("chat", tier):
            async for event in self.backend.chat(request, tier=tier, prompts=prompts):
                if isinstance(event, TextDelta):
                    if not redacting:
                        yield event
                        continue
                    held += event.text
                    cut = held.rfind("\n") + 1
                    if cut == 0 and len(held) > _LONGEST_HELD_LINE:
                        cut = len(held)
                    if cut:
                        yield TextDelta(redact(held[:cut]))
                        held = held[cut:]
                elif isinstance(event, Proposed):
                    yield Proposed(_redacted(event.proposal)) if redacting else event
                elif isinstance(event, ReplyDone):
                    if held:
                        yield TextDelta(redact(held))
                        held = ""
                    yield replace(event, tier=tier.value)


# A line of a streamed reply held back for redaction is let go past this many
# characters, so that a reply without line breaks still streams.
_LONGEST_HELD_LINE = 2000


def _redacted(proposal: ProposalDraft) -> ProposalDraft:
    return proposal.model_copy(
        update={
            "title": redact(proposal.title),
            "detail": redact(proposal.detail),
            "steps": [redact(step) for step in proposal.steps],
        }
    )


def make_ai(config: AIConfig | None = None, *, backend: Backend | None = None) -> AI:
    """The facade as ``config`` says, on ``backend`` when given; otherwise
    Anthropic when ``ANTHROPIC_API_KEY`` is set, else offline."""
    config = config or AIConfig()
    limiter = (
        TokenBuckets(per_minute=config.calls_per_minute, burst=config.burst)
        if config.calls_per_minute > 0
        else None
    )
    if backend is None:
        backend = _backend(config)
    return AI(backend, deep_above_tokens=config.deep_above_tokens, limiter=limiter)


def _backend(config: AIConfig) -> Backend:
    api_key = os.environ.get("ANTHROPIC_API_KEY")
    if api_key:
        from services.core.ai.anthropic_backend import AnthropicBackend

        return AnthropicBackend(
            api_key=api_key,
            fast_model=config.fast_model,
            deep_model=config.deep_model,
            timeout_seconds=config.timeout_seconds,
            max_retries=config.max_retries,
        )
    from services.core.ai.offline import OfflineBackend

    return OfflineBackend()
