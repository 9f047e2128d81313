"""The Anthropic backend: the official async SDK, structured output via tool use.

Every call forces one tool whose ``input_schema`` is the JSON schema of the
expected output; the tool input is validated with pydantic. The SDK's own
timeout and bounded retries (429, 529, 5xx, connection errors) apply; what
still fails maps to the suite's errors: UNAVAILABLE when the API cannot be
reached or keeps refusing, FAILED_PRECONDITION (reason MODEL_OUTPUT_INVALID)
when the answer is unusable, INTERNAL (MODEL_REQUEST_REJECTED) when the API
rejects the request itself. Tests inject an HTTP transport with recorded
responses through ``http_client``.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

import anthropic
import httpx2
from anthropic.types import ToolUseBlock
from pydantic import BaseModel, ValidationError

from services.core import metrics
from services.core.ai.prompt import session_context
from services.core.ai.types import (
    DecisionTree,
    Document,
    FixSuggestion,
    ScriptDraft,
    SessionContext,
    Templatized,
    Tier,
)
from services.core.errors import FailedPrecondition, Internal, Unavailable

log = logging.getLogger("flowpilot.ai")

T = TypeVar("T", bound=BaseModel)

SYSTEM = (
    "You are FlowPilot, an assistant for MSP engineers troubleshooting client tickets. "
    "Be concrete and brief, prefer the most likely cause first, never invent facts that are "
    "not in the context, and never repeat secrets. Answer only by calling the tool you are given."
)


class AnthropicBackend:
    def __init__(
        self,
        *,
        api_key: str,
        fast_model: str,
        deep_model: str,
        timeout_seconds: float = 60.0,
        max_retries: int = 2,
        budget_tokens: dict[Tier, int] | None = None,
        http_client: httpx2.AsyncClient | None = None,
        base_url: str | None = None,
    ) -> None:
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            timeout=timeout_seconds,
            max_retries=max_retries,
            http_client=http_client,
            base_url=base_url,
        )
        self._models = {Tier.FAST: fast_model, Tier.DEEP: deep_model}
        self._budget = budget_tokens or {Tier.FAST: 12_000, Tier.DEEP: 48_000}
        self.name = "anthropic"

    async def suggest_fix(self, ctx: SessionContext, *, tier: Tier) -> FixSuggestion:
        prompt = (
            "Propose the single most likely fix for this ticket, as ordered steps an engineer can follow, "
            "with your confidence from 0 to 1.\n\n" + session_context(ctx, budget_tokens=self._budget[tier])
        )
        return await self._call(tier, prompt, "propose_fix", "Propose a fix.", FixSuggestion)

    async def write_resolution_note(self, ctx: SessionContext, *, fmt: str, tier: Tier) -> Document:
        prompt = (
            f"Write the ticket's resolution note in {fmt} for the client's PSA: problem, what was found, "
            "what was done with each check's and script's outcome, the fix applied (only a fix marked "
            "ACCEPTED is applied; list REJECTED ones under 'Tried / ruled out' with their reason, and never "
            "present a SUGGESTED ONLY fix as applied), how it was verified, and a short timeline with the "
            "times as given (they are in the account's time zone). No greetings.\n\n"
            + session_context(ctx, budget_tokens=self._budget[tier])
        )
        return await self._call(tier, prompt, "write_note", "Return the note text.", Document)

    async def write_escalation_package(self, ctx: SessionContext, *, fmt: str, tier: Tier) -> Document:
        prompt = (
            f"Write an escalation package in {fmt} for the next engineer: the problem, everything tried with "
            "results, what is ruled out (REJECTED fixes, with their reason), fixes only SUGGESTED and never "
            "applied, open questions, why it is escalated, and a short timeline with the times as given.\n\n"
            + session_context(ctx, budget_tokens=self._budget[tier])
        )
        return await self._call(tier, prompt, "write_package", "Return the package text.", Document)

    async def templatize_script(self, script: ScriptDraft, *, tier: Tier) -> Templatized:
        prompt = (
            "Turn this script into a reusable template: replace client-specific literals (host names, IP "
            "addresses, user names, paths, quoted values) with {{parameter_name}} placeholders and list each "
            f"parameter with a description and its original value as default.\n\nLanguage: {script.language}\n"
            f"Suggested name: {script.name_hint}\n\n{script.body[: self._budget[tier] * 4]}"
        )
        return await self._call(tier, prompt, "templatize", "Return the template.", Templatized)

    async def build_decision_tree(self, problem: str, *, tier: Tier) -> DecisionTree:
        prompt = (
            "Build a decision tree an L1 technician can walk for this problem. Nodes are question, action, "
            "resolution or escalation; questions and actions have options each leading to another node id; "
            "every path ends in a resolution or escalation node; no cycles; at most 40 nodes.\n\n"
            f"Problem: {problem[: self._budget[tier] * 4]}"
        )
        return await self._call(tier, prompt, "decision_tree", "Return the tree.", DecisionTree)

    async def _call(self, tier: Tier, prompt: str, tool: str, description: str, output: type[T]) -> T:
        model = self._models[tier]
        schema = output.model_json_schema()
        schema.get("properties", {}).pop("model", None)
        try:
            response = await self._client.messages.create(
                model=model,
                max_tokens=4096 if tier is Tier.FAST else 8192,
                system=SYSTEM,
                messages=[{"role": "user", "content": prompt}],
                tools=[{"name": tool, "description": description, "input_schema": schema}],
                tool_choice={"type": "tool", "name": tool},
            )
        except (anthropic.APITimeoutError, anthropic.APIConnectionError) as exc:
            raise Unavailable(
                "the AI model could not be reached; retry later", reason="MODEL_UNAVAILABLE"
            ) from exc
        except anthropic.APIStatusError as exc:
            if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
                raise Unavailable(
                    "the AI model is overloaded or failing; retry later", reason="MODEL_UNAVAILABLE"
                ) from exc
            log.error("model rejected request", extra={"fields": {"status": exc.status_code, "model": model}})
            raise Internal("the AI model rejected the request", reason="MODEL_REQUEST_REJECTED") from exc
        usage = getattr(response, "usage", None)
        if usage is not None:  # tokens as the API counted them
            for kind, used in (("input", usage.input_tokens), ("output", usage.output_tokens)):
                metrics.AI_TOKENS.labels(tier.value, model, kind).inc(used or 0)
        tool_input: Any = next(
            (b.input for b in response.content if isinstance(b, ToolUseBlock) and b.name == tool),
            None,
        )
        if tool_input is None:
            raise FailedPrecondition(
                "the AI model did not return a usable answer", reason="MODEL_OUTPUT_INVALID"
            )
        try:
            if isinstance(tool_input, str):
                tool_input = json.loads(tool_input)
            result = output.model_validate({**tool_input, "model": response.model or model})
        except (ValidationError, ValueError, TypeError) as exc:
            log.warning("model output invalid", extra={"fields": {"tool": tool, "model": model}})
            raise FailedPrecondition(
                "the AI model returned an invalid answer", reason="MODEL_OUTPUT_INVALID"
            ) from exc
        return result
