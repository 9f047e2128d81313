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
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import anthropic
import httpx2
from anthropic.types import ToolUseBlock
from pydantic import BaseModel, ValidationError

from services.core import metrics
from services.core.ai.prompt import CHAT_BUDGET_TOKENS, chat_context, session_context
from services.core.ai.types import (
    ChatEvent,
    ChatRequest,
    DecisionTree,
    Document,
    FixSuggestion,
    Prompts,
    ProposalDraft,
    Proposed,
    ReplyDone,
    ScriptDraft,
    SessionContext,
    Templatized,
    TextDelta,
    Tier,
    Turn,
)
from services.core.errors import FailedPrecondition, FlowPilotError, Internal, Unavailable

log = logging.getLogger("flowpilot.ai")

T = TypeVar("T", bound=BaseModel)

SYSTEM = (
    "You are FlowPilot, an assistant for MSP engineers troubleshooting client tickets. "
    "Be concrete and brief, prefer the most likely cause first, never invent facts that are "
    "not in the context, and never repeat secrets. Answer only by calling the tool you are given."
)
# The built-in texts of the tasks: the shipped defaults of ``settings.prompts``
# (version 1, verbatim), used when the account's prompts could not be read.
# The session context, script or problem follows each after a blank line.
TASK_FIX = (
    "Propose the single most likely fix for this ticket, as ordered steps an engineer can follow, "
    "with your confidence from 0 to 1."
)
TASK_NOTE = (
    "Write the ticket's resolution note in {format} for the client's PSA: problem, what was found, "
    "what was done with each check's and script's outcome, the fix applied (only a fix marked "
    "ACCEPTED is applied; list REJECTED ones under 'Tried / ruled out' with their reason, and never "
    "present a SUGGESTED ONLY fix as applied), how it was verified, and a short timeline with the "
    "times as given (they are in the account's time zone). No greetings."
)
TASK_PACKAGE = (
    "Write an escalation package in {format} for the next engineer: the problem, everything tried with "
    "results, what is ruled out (REJECTED fixes, with their reason), fixes only SUGGESTED and never "
    "applied, open questions, why it is escalated, and a short timeline with the times as given."
)
TASK_TEMPLATIZE = (
    "Turn this script into a reusable template: replace client-specific literals (host names, IP "
    "addresses, user names, paths, quoted values) with {{parameter_name}} placeholders and list each "
    "parameter with a description and its original value as default."
)
TASK_TREE = (
    "Build a decision tree an L1 technician can walk for this problem. Nodes are question, action, "
    "resolution or escalation; questions and actions have options each leading to another node id; "
    "every path ends in a resolution or escalation node; no cycles; at most 40 nodes."
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

    async def suggest_fix(self, ctx: SessionContext, *, tier: Tier, prompts: Prompts) -> FixSuggestion:
        prompt = (
            prompts.text("task.fix", TASK_FIX)
            + "\n\n"
            + session_context(ctx, budget_tokens=self._budget[tier])
        )
        return await self._call(
            tier, prompts, prompt, "propose_fix", description="Propose a fix.", output=FixSuggestion
        )

    async def write_resolution_note(
        self, ctx: SessionContext, *, fmt: str, tier: Tier, prompts: Prompts
    ) -> Document:
        prompt = (
            prompts.text("task.note", TASK_NOTE).replace("{format}", fmt)
            + "\n\n"
            + session_context(ctx, budget_tokens=self._budget[tier])
        )
        return await self._call(
            tier, prompts, prompt, "write_note", description="Return the note text.", output=Document
        )

    async def write_escalation_package(
        self, ctx: SessionContext, *, fmt: str, tier: Tier, prompts: Prompts
    ) -> Document:
        prompt = (
            prompts.text("task.package", TASK_PACKAGE).replace("{format}", fmt)
            + "\n\n"
            + session_context(ctx, budget_tokens=self._budget[tier])
        )
        return await self._call(
            tier, prompts, prompt, "write_package", description="Return the package text.", output=Document
        )

    async def templatize_script(self, script: ScriptDraft, *, tier: Tier, prompts: Prompts) -> Templatized:
        prompt = (
            prompts.text("task.templatize", TASK_TEMPLATIZE)
            + f"\n\nLanguage: {script.language}\nSuggested name: {script.name_hint}\n\n"
            + script.body[: self._budget[tier] * 4]
        )
        return await self._call(
            tier, prompts, prompt, "templatize", description="Return the template.", output=Templatized
        )

    async def build_decision_tree(self, problem: str, *, tier: Tier, prompts: Prompts) -> DecisionTree:
        prompt = prompts.text("task.tree", TASK_TREE) + f"\n\nProblem: {problem[: self._budget[tier] * 4]}"
        return await self._call(
            tier, prompts, prompt, "decision_tree", description="Return the tree.", output=DecisionTree
        )

    async def _call(
        self, tier: Tier, prompts: Prompts, prompt: str, tool: str, *, description: str, output: type[T]
    ) -> T:
        model = self._models[tier]
        schema = output.model_json_schema()
        schema.get("properties", {}).pop("model", None)
        try:
            response = await self._client.messages.create(
                model=model,
                max_tokens=4096 if tier is Tier.FAST else 8192,
                system=prompts.text("system", SYSTEM),
                messages=[{"role": "user", "content": prompt}],
                tools=[{"name": tool, "description": description, "input_schema": schema}],
                tool_choice={"type": "tool", "name": tool},
            )
        except anthropic.APIError as exc:
            raise _model_error(exc, model) from exc
        _count_tokens(response, tier, model)
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

    async def chat(self, request: ChatRequest, *, tier: Tier, prompts: Prompts) -> AsyncIterator[ChatEvent]:
        """The copilot's reply through the SDK's streaming API: text deltas as
        they arrive, a proposal per complete tool call, then ReplyDone. The
        SDK retries (429, 529, 5xx, connection errors) only while no byte of
        the reply has arrived; once it streams, a failure ends the reply with
        UNAVAILABLE. Closing the stream early (the client went away) closes
        the HTTP response: the model request is aborted."""
        model = self._models[tier]
        session, turns, omitted = chat_context(request, budget_tokens=CHAT_BUDGET_TOKENS[tier])
        try:
            async with self._client.messages.stream(
                model=model,
                max_tokens=2048 if tier is Tier.FAST else 4096,
                system=f"{prompts.text('task.chat', CHAT_SYSTEM)}\n\n{session}",
                messages=_conversation(turns, omitted, request.question),
                tools=_chat_tools(prompts),
            ) as stream:
                async for event in stream:
                    if event.type == "text":
                        yield TextDelta(event.text)
                    elif event.type == "content_block_stop" and event.content_block.type == "tool_use":
                        proposal = _proposal(event.content_block)
                        if proposal is not None:
                            yield Proposed(proposal)
                final = await stream.get_final_message()
        except anthropic.APIError as exc:
            raise _model_error(exc, model) from exc
        _count_tokens(final, tier, model)
        yield ReplyDone(
            model=final.model or model,
            input_tokens=final.usage.input_tokens or 0,
            output_tokens=final.usage.output_tokens or 0,
        )


CHAT_SYSTEM = (
    "You are FlowPilot's copilot: a senior engineer on the call with an MSP engineer working a client's "
    "ticket. Answer briefly and concretely from the session below, most likely cause first; quote the facts "
    "you rely on; never invent facts and never repeat secrets. You cannot change the session yourself: to "
    "add a fact, add a task-lane item (a check, script or question) or suggest a fix, call the matching "
    "tool, and the engineer decides whether to apply it. Suggest a fix only when the facts support one."
)
CHAT_TOOLS: list[Any] = [
    {
        "name": "propose_fact",
        "description": "Propose recording something now known about the problem.",
        "input_schema": {
            "type": "object",
            "properties": {"text": {"type": "string", "maxLength": 4096}},
            "required": ["text"],
        },
    },
    {
        "name": "propose_lane_item",
        "description": "Propose a next check, script or question for the task lane.",
        "input_schema": {
            "type": "object",
            "properties": {
                "kind": {"type": "string", "enum": ["check", "script", "question"]},
                "title": {"type": "string", "maxLength": 200},
                "detail": {"type": "string", "maxLength": 4000},
            },
            "required": ["kind", "title"],
        },
    },
    {
        "name": "propose_fix",
        "description": "Propose a fix (it replaces the session's active suggested fix if applied).",
        "input_schema": {
            "type": "object",
            "properties": {
                "title": {"type": "string", "maxLength": 200},
                "summary": {"type": "string", "maxLength": 4000},
                "steps": {"type": "array", "items": {"type": "string"}, "maxItems": 30},
            },
            "required": ["title", "steps"],
        },
    },
]


def _chat_tools(prompts: Prompts) -> list[Any]:
    """The copilot's tools, each described by the account's ``tool.<name>`` prompt."""
    return [
        {**tool, "description": prompts.text(f"tool.{tool['name']}", tool["description"])}
        for tool in CHAT_TOOLS
    ]


def _model_error(exc: anthropic.APIError, model: str) -> FlowPilotError:
    """The suite's error for what the SDK raised (after its own retries)."""
    if isinstance(exc, anthropic.APIStatusError) and not (
        exc.status_code in (408, 409, 429) or exc.status_code >= 500 or _overloaded(exc)
    ):
        log.error("model rejected request", extra={"fields": {"status": exc.status_code, "model": model}})
        return Internal("the AI model rejected the request", reason="MODEL_REQUEST_REJECTED")
    if isinstance(exc, anthropic.APIStatusError):
        return Unavailable("the AI model is overloaded or failing; retry later", reason="MODEL_UNAVAILABLE")
    return Unavailable("the AI model could not be reached; retry later", reason="MODEL_UNAVAILABLE")


def _overloaded(exc: anthropic.APIStatusError) -> bool:
    """An error event in the middle of a stream arrives on a 200 response:
    its body says what it is."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    return kind in ("overloaded_error", "api_error", "rate_limit_error")


def _count_tokens(response: Any, tier: Tier, model: str) -> None:
    usage = getattr(response, "usage", None)
    if usage is not None:  # tokens as the API counted them
        for kind, used in (("input", usage.input_tokens), ("output", usage.output_tokens)):
            metrics.AI_TOKENS.labels(tier.value, model, kind).inc(used or 0)


def _conversation(turns: tuple[Turn, ...], omitted: int, question: str) -> list[Any]:
    """The Messages API's alternating turns, starting with the user: the kept
    conversation, then the new question (consecutive turns of one role joined)."""
    messages: list[dict[str, str]] = []
    for role, text in [*((t.role, t.text) for t in turns), ("user", question)]:
        if not messages and role != "user":
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n\n" + text
        else:
            messages.append({"role": role, "content": text})
    if omitted:
        messages[0]["content"] = f"({omitted} older messages left out)\n\n" + messages[0]["content"]
    return list(messages)


_TOOL_KINDS = {"propose_fact": "fact", "propose_lane_item": "lane_item", "propose_fix": "fix"}


def _proposal(block: ToolUseBlock) -> ProposalDraft | None:
    """A proposal from a complete tool call; None (logged) when unusable."""
    given: Any = block.input
    kind = _TOOL_KINDS.get(block.name)
    if kind is None or not isinstance(given, dict):
        log.warning("model called an unknown tool", extra={"fields": {"tool": block.name}})
        return None
    fields: dict[str, Any] = {"kind": kind, "tool_call_id": block.id[:100]}
    if kind == "fact":
        fields["title"] = given.get("text", "")
    elif kind == "lane_item":
        fields |= {"title": given.get("title", ""), "detail": given.get("detail", "")}
        fields["lane_kind"] = given.get("kind", "check")
    else:
        fields |= {"title": given.get("title", ""), "detail": given.get("summary", "")}
        fields["steps"] = given.get("steps", [])
    try:
        return ProposalDraft.model_validate(fields)
    except ValidationError:
        log.warning("model proposal invalid", extra={"fields": {"tool": block.name}})
        return None
