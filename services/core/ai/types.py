"""Typed inputs and outputs of the AI layer (pydantic: outputs are validated)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace

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


@dataclass(frozen=True)
class SessionContext:
    """What a model may know of a session. Lists are oldest first."""

    ticket_ref: str
    title: str
    problem: str
    status: str = "active"
    facts: tuple[str, ...] = ()
    lane: tuple[LaneView, ...] = ()
    fix_title: str = ""
    fix_steps: tuple[str, ...] = ()
    fix_status: str = ""
    resolution_summary: str = ""
    escalation_reason: str = ""
    walked_path: tuple[str, ...] = ()

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
            fix_title=f(self.fix_title),
            fix_steps=tuple(f(x) for x in self.fix_steps),
            resolution_summary=f(self.resolution_summary),
            escalation_reason=f(self.escalation_reason),
            walked_path=tuple(f(x) for x in self.walked_path),
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
