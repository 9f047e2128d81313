"""The AI layer shared by every service.

One interface (:class:`AI`) for the five things FlowPilot asks of a model:
suggest a fix, write a resolution note, write an escalation package,
templatize a script, build a decision tree. Two backends: Anthropic (the
official async SDK, tool use with JSON schemas, model tiers, timeouts and
bounded retries) and an offline, deterministic one that needs no network and
is the default without ``ANTHROPIC_API_KEY``.

:class:`AI` applies what is the same for every backend: redaction of secrets
before anything reaches a model and in generated notes (when the account's
``notes.redact_sensitive`` is on), the model tier (``ai.model_tier``, ``auto``
picking by size and difficulty), the context budget, and the per-account limit
on model calls (RESOURCE_EXHAUSTED with a retry delay past it).
"""

from services.core.ai.service import AI, AIConfig, Preferences, make_ai
from services.core.ai.types import (
    DEFAULT_PROMPT_VERSION,
    ChatEvent,
    ChatRequest,
    DecisionTree,
    Document,
    Event,
    FixSuggestion,
    FixView,
    LaneView,
    Parameter,
    Prompt,
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
    TreeNode,
    TreeOption,
    Turn,
)

__all__ = [
    "AI",
    "DEFAULT_PROMPT_VERSION",
    "AIConfig",
    "ChatEvent",
    "ChatRequest",
    "DecisionTree",
    "Document",
    "Event",
    "FixSuggestion",
    "FixView",
    "LaneView",
    "Parameter",
    "Preferences",
    "Prompt",
    "Prompts",
    "ProposalDraft",
    "Proposed",
    "Reference",
    "ReplyDone",
    "ScriptDraft",
    "SessionContext",
    "Templatized",
    "TextDelta",
    "Tier",
    "TreeNode",
    "TreeOption",
    "Turn",
    "make_ai",
]
