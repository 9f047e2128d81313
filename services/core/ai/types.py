"""Typed inputs and outputs of the AI layer (pydantic: outputs are validated)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from pydantic import BaseModel, ConfigDict, Field


class Tier(enum.Enum):
    FAST = "fast"
    DEEP = "deep"


@dataclass(frozen=True)
class LaneView:
    kind: str  # check | script | question | action
    title: str
    status: str  # pending | done | skipped | failed
    detail: str = ""
    output: str = ""
    script_body: str = ""
    script_language: str = ""
    at: str = ""  # when it reached its status, in the account's time zone


@dataclass(frozen=True)
class FixView:
    """A suggested fix as the history tells it: proposed (open), accepted
    (applied) or rejected (ruled out); ``active`` while no newer one replaced it."""

    title: str
    status: str  # proposed | accepted | rejected
    steps: tuple[str, ...] = ()
    active: bool = True
    proposed_at: str = ""
    decided_by: str = ""  # a display name, else the user id
    decided_at: str = ""
    reject_reason: str = ""


@dataclass(frozen=True)
class Event:
    """One line of a session's timeline."""

    at: str  # in the account's time zone
    text: str


@dataclass(frozen=True)
class SessionContext:
    """What a model may know of a session. Lists are oldest first."""

    ticket_ref: str
    title: str
    problem: str
    status: str = "active"
    facts: tuple[str, ...] = ()
    lane: tuple[LaneView, ...] = ()
    fixes: tuple[FixView, ...] = ()
    resolution_summary: str = ""
    escalation_reason: str = ""
    walked_path: tuple[str, ...] = ()
    timeline: tuple[Event, ...] = ()
    time_zone: str = "UTC"
    started_by: str = ""
    closed_by: str = ""

    def applied_fix(self) -> FixView | None:
        """The accepted fix (the newest, if ever more than one)."""
        return next((f for f in reversed(self.fixes) if f.status == "accepted"), None)

    def ruled_out(self) -> tuple[FixView, ...]:
        return tuple(f for f in self.fixes if f.status == "rejected")

    def open_proposals(self) -> tuple[FixView, ...]:
        """Fixes proposed and never decided: not applied, not ruled out."""
        return tuple(f for f in self.fixes if f.status == "proposed")

    def map_text(self, f: Callable[[str], str]) -> SessionContext:
        """The same context with ``f`` applied to every free text."""
        return replace(
            self,
            title=f(self.title),
            problem=f(self.problem),
            facts=tuple(f(x) for x in self.facts),
            lane=tuple(
                replace(
                    item,
                    title=f(item.title),
                    detail=f(item.detail),
                    output=f(item.output),
                    script_body=f(item.script_body),
                )
                for item in self.lane
            ),
            fixes=tuple(
                replace(
                    fix,
                    title=f(fix.title),
                    steps=tuple(f(s) for s in fix.steps),
                    reject_reason=f(fix.reject_reason),
                )
                for fix in self.fixes
            ),
            resolution_summary=f(self.resolution_summary),
            escalation_reason=f(self.escalation_reason),
            walked_path=tuple(f(x) for x in self.walked_path),
            timeline=tuple(replace(event, text=f(event.text)) for event in self.timeline),
        )


class _Output(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class FixSuggestion(_Output):
    title: str = Field(min_length=1, max_length=200)
    summary_markdown: str = Field(min_length=1, max_length=8000)
    steps: list[str] = Field(min_length=1, max_length=30)
    confidence: float = Field(ge=0, le=1)
    rationale: str = Field(default="", max_length=4000)
    model: str = "offline"


class Document(_Output):
    text: str = Field(min_length=1, max_length=65536)
    model: str = "offline"


@dataclass(frozen=True)
class ScriptDraft:
    body: str
    language: str
    name_hint: str = ""


class Parameter(_Output):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    description: str = Field(default="", max_length=500)
    required: bool = True
    default: str = Field(default="", max_length=1000)


class Templatized(_Output):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    body: str = Field(min_length=1, max_length=65536)
    parameters: list[Parameter] = Field(default_factory=list, max_length=50)
    model: str = "offline"


class TreeOption(_Output):
    label: str = Field(min_length=1, max_length=200)
    next: str = Field(min_length=1, max_length=100)


class TreeNode(_Output):
    id: str = Field(min_length=1, max_length=100)
    kind: str = Field(pattern=r"^(question|action|resolution|escalation)$")
    text: str = Field(min_length=1, max_length=2000)
    options: list[TreeOption] = Field(default_factory=list, max_length=20)


class DecisionTree(_Output):
    root: str = Field(min_length=1, max_length=100)
    nodes: list[TreeNode] = Field(min_length=1, max_length=500)
    model: str = "offline"


# --- the copilot conversation ------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """One earlier message of the conversation."""

    role: str  # user | assistant
    text: str


@dataclass(frozen=True)
class Reference:
    """Something of the account's own knowledge the copilot is given, and
    cites: a similar resolved session (its problem and accepted fix) or a
    library script template."""

    name: str  # sessions/{session} or scriptTemplates/{script_template}
    title: str
    text: str


@dataclass(frozen=True)
class ChatRequest:
    """What the copilot is asked: the session, the conversation so far (oldest
    first; the backend keeps the newest that fit its tier's budget), the
    engineer's new message, and the account's knowledge found for it (best
    first; every one fits the context, so every one is cited)."""

    session: SessionContext
    history: tuple[Turn, ...]
    question: str
    references: tuple[Reference, ...] = ()


class ProposalDraft(_Output):
    """One tool call of a reply: a fact, a task-lane item or a fix the copilot
    proposes (written only when the engineer applies it)."""

    kind: str = Field(pattern=r"^(fact|lane_item|fix)$")
    # The fact's text (at most 4096 characters), or a lane item's or fix's
    # title (clipped to 200 when applied).
    title: str = Field(min_length=1, max_length=4096)
    detail: str = Field(default="", max_length=4000)
    lane_kind: str = Field(default="check", pattern=r"^(check|script|question)$")
    steps: list[str] = Field(default_factory=list, max_length=30)
    tool_call_id: str = Field(default="", max_length=100)


@dataclass(frozen=True)
class TextDelta:
    """A piece of the reply's text."""

    text: str


@dataclass(frozen=True)
class Proposed:
    """A proposal, once its tool call is complete."""

    proposal: ProposalDraft


@dataclass(frozen=True)
class ReplyDone:
    """The end of a reply: who wrote it and what it cost."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    tier: str = ""


ChatEvent = TextDelta | Proposed | ReplyDone


# The version of every shipped default prompt (``settings_0004``): the texts
# the Anthropic backend keeps as constants, verbatim. An account's override
# is a later version.
DEFAULT_PROMPT_VERSION = 1


@dataclass(frozen=True)
class Prompt:
    """One prompt as the account sees it (the settings service's ``Prompt``)."""

    text: str
    version: int


@dataclass(frozen=True)
class Prompts:
    """The account's prompts by slug (``system``, ``task.note``, ``tool.propose_fix``…).
    A slug that is missing (none at all when the settings service could not
    be read) is the built-in text, the shipped default: version 1."""

    by_slug: Mapping[str, Prompt] = field(default_factory=dict)

    def text(self, slug: str, builtin: str) -> str:
        found = self.by_slug.get(slug)
        return builtin if found is None else found.text

    def version(self, slug: str) -> int:
        found = self.by_slug.get(slug)
        return DEFAULT_PROMPT_VERSION if found is None else found.version
