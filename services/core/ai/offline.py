"""The offline backend: deterministic, no network, good enough to use.

Fixes are assembled from failed checks and facts, notes composed from the
session's facts, lane and fix, scripts templatized by finding hostnames, IP
addresses, user names, paths and quoted literals, decision trees from a small
library of troubleshooting patterns matched on the problem text.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from services.core.ai.prompt import CHAT_BUDGET_TOKENS, chat_context, estimate_tokens
from services.core.ai.render import Section, render
from services.core.ai.types import (
    ChatEvent,
    ChatRequest,
    DecisionTree,
    Document,
    FixSuggestion,
    FixView,
    LaneView,
    Parameter,
    Prompts,
    ProposalDraft,
    Proposed,
    ReplyDone,
    ScriptDraft,
    SessionContext,
    Templatized,
    TextDelta,
    Tier,
    TreeNode,
    TreeOption,
)

MODEL = "offline"


class OfflineBackend:
    """Ignores the account's prompts: it sends no model anything."""

    name = MODEL

    async def suggest_fix(self, ctx: SessionContext, *, tier: Tier, prompts: Prompts) -> FixSuggestion:
        failed = [i for i in ctx.lane if i.status == "failed"]
        done = [i for i in ctx.lane if i.status == "done"]
        steps: list[str] = []
        for item in failed[-5:]:
            hint = f" (it reported: {item.output.strip()[:200]})" if item.output.strip() else ""
            steps.append(f"Resolve the failed {item.kind} '{item.title}'{hint}.")
        for fact in ctx.facts[-3:]:
            steps.append(f"Act on what we know: {fact[:200]}")
        if not steps:
            steps.append("Reproduce the problem and capture the exact error message.")
            steps.append("Check recent changes (updates, policy, credentials) on the affected system.")
        steps.append("Verify with the user that the problem is gone, then record the result.")
        focus = failed[-1].title if failed else (ctx.title or ctx.problem[:80] or "the reported problem")
        confidence = min(0.9, 0.2 + 0.1 * len(ctx.facts) + 0.15 * len(failed) + 0.05 * len(done))
        summary = f"Based on {len(ctx.facts)} known facts and {len(failed)} failed checks, address **{focus}** first."
        return FixSuggestion(
            title=f"Fix: {focus}"[:200],
            summary_markdown=summary,
            steps=steps[:30],
            confidence=round(confidence, 2),
            rationale="Assembled offline from the task lane's failed items and the session's facts.",
            model=MODEL,
        )

    async def write_resolution_note(
        self, ctx: SessionContext, *, fmt: str, tier: Tier, prompts: Prompts
    ) -> Document:
        sections = _common_sections(ctx)
        applied = ctx.applied_fix()
        if applied is not None:
            sections.append(("Fix applied", [_decided(applied, "accepted"), *applied.steps]))
        sections += _ruled_out_and_open(ctx)
        closing = ctx.resolution_summary or "Not resolved yet."
        if ctx.status == "resolved" and ctx.closed_by:
            closing += f" (resolved by {ctx.closed_by})"
        sections.append(("Resolution", [closing]))
        sections += _timeline(ctx)
        return Document(text=render(f"Resolution note — {ctx.ticket_ref}", sections, fmt), model=MODEL)

    async def write_escalation_package(
        self, ctx: SessionContext, *, fmt: str, tier: Tier, prompts: Prompts
    ) -> Document:
        sections = _common_sections(ctx)
        applied = ctx.applied_fix()
        if applied is not None:
            sections.append(
                ("Fix applied (did not resolve it)", [_decided(applied, "accepted"), *applied.steps])
            )
        sections += _ruled_out_and_open(ctx)
        open_items = [f"{i.kind}: {i.title}" for i in ctx.lane if i.status == "pending"]
        if open_items:
            sections.append(("Not yet tried", open_items))
        sections.append(("Why escalated", [ctx.escalation_reason or "No reason given yet."]))
        sections += _timeline(ctx)
        return Document(text=render(f"Escalation package — {ctx.ticket_ref}", sections, fmt), model=MODEL)

    async def templatize_script(self, script: ScriptDraft, *, tier: Tier, prompts: Prompts) -> Templatized:
        return templatize(script)

    async def build_decision_tree(self, problem: str, *, tier: Tier, prompts: Prompts) -> DecisionTree:
        return decision_tree(problem)

    async def chat(self, request: ChatRequest, *, tier: Tier, prompts: Prompts) -> AsyncIterator[ChatEvent]:
        """A reply grounded in the session, streamed a few words at a time."""
        session, turns, omitted = chat_context(request, budget_tokens=CHAT_BUDGET_TOKENS[tier])
        text, proposals = await chat_reply(request, turns=len(turns), omitted=omitted)
        words = text.split(" ")
        for start in range(0, len(words), 8):
            yield TextDelta(" ".join(words[start : start + 8]) + (" " if start + 8 < len(words) else ""))
        for proposal in proposals:
            yield Proposed(proposal)
        read = session + request.question + "".join(t.text for t in turns)
        yield ReplyDone(model=MODEL, input_tokens=estimate_tokens(read), output_tokens=estimate_tokens(text))


# --- the copilot conversation --------------------------------------------------

_REMEMBER = re.compile(r"^\s*(?:remember|note|fact)\s*(?:that|:)?\s*(?P<fact>.+)$", re.I | re.S)


def next_check(ctx: SessionContext) -> str:
    """The first check of the problem's pattern not in the task lane yet."""
    lowered = f"{ctx.title} {ctx.problem}".lower()
    checks = next((steps for words, steps in _PATTERNS if any(w in lowered for w in words)), _GENERIC)
    titles = {item.title.lower() for item in ctx.lane}
    for question, _ in [*checks, *_GENERIC]:
        if question.lower() not in titles:
            return question
    return "Reproduce the problem with the user and capture the exact error message."


async def chat_reply(request: ChatRequest, *, turns: int, omitted: int) -> tuple[str, list[ProposalDraft]]:
    """The offline copilot's answer: what the session says (the facts it used,
    quoted), what is ruled out or open, and one next check it proposes; a
    fact when asked to remember one, a fix when asked for one."""
    ctx = request.session
    lines = [f"On {ctx.ticket_ref} ({ctx.title}): {ctx.problem[:200] or 'no problem stated yet'}."]
    facts = ctx.facts[-3:]
    if facts:
        lines.append("What we know: " + "; ".join(f'"{fact[:300]}"' for fact in reversed(facts)) + ".")
    else:
        lines.append("Nothing is recorded as known yet.")
    failed = [item for item in ctx.lane if item.status == "failed"]
    if failed:
        lines.append("Failed so far: " + "; ".join(f"{i.kind} '{i.title}'" for i in failed[-3:]) + ".")
    for fix in ctx.ruled_out()[-3:]:
        lines.append(
            f"Ruled out: {fix.title}" + (f" ({fix.reject_reason})" if fix.reject_reason else "") + "."
        )
    for fix in ctx.open_proposals()[-1:]:
        lines.append(f"Suggested, not applied: {fix.title}.")
    for reference in request.references:
        lines.append(f"Seen before in this account: [{reference.name}] {reference.title[:200]}.")
    if turns or omitted:
        lines.append(f"(I read {turns} earlier message(s) of this conversation; {omitted} older left out.)")
    check = next_check(ctx)
    lines.append(f"Next check I propose: {check}")
    proposals = [
        ProposalDraft(kind="lane_item", lane_kind="check", title=check[:200], tool_call_id="offline_1")
    ]
    remembered = _REMEMBER.match(request.question)
    if remembered:
        fact = remembered.group("fact").strip()[:4096]
        lines.append(f'I propose to record: "{fact[:300]}"')
        proposals.append(ProposalDraft(kind="fact", title=fact, tool_call_id="offline_2"))
    if "fix" in request.question.lower():
        suggested = await OfflineBackend().suggest_fix(ctx, tier=Tier.FAST, prompts=Prompts())
        lines.append(f"I propose the fix: {suggested.title}")
        proposals.append(
            ProposalDraft(
                kind="fix",
                title=suggested.title,
                detail=suggested.summary_markdown[:4000],
                steps=suggested.steps,
                tool_call_id="offline_3",
            )
        )
    return "\n".join(lines), proposals


def _common_sections(ctx: SessionContext) -> list[Section]:
    sections: list[Section] = [("Problem", [ctx.problem or ctx.title])]
    if ctx.walked_path:
        sections.append(("Steps walked", list(ctx.walked_path)))
    if ctx.facts:
        sections.append(("What we found", list(ctx.facts)))
    done = [_outcome(i) for i in ctx.lane if i.status != "pending"]
    if done:
        sections.append(("What we did", done))
    return sections


def _outcome(item: LaneView) -> str:
    """A check, script, question or action with its outcome (and when)."""
    line = f"{item.kind.capitalize()} {item.title} — {item.status}"
    if item.at:
        line += f" ({item.at})"
    output = item.output.strip()
    return line + (f": {output[:300]}" if output else "")


def _decided(fix: FixView, verb: str) -> str:
    who = f" by {fix.decided_by}" if fix.decided_by else ""
    when = f" on {fix.decided_at}" if fix.decided_at else ""
    return f"{fix.title} — {verb}{who}{when}"


def _ruled_out_and_open(ctx: SessionContext) -> list[Section]:
    """Rejected fixes (tried or ruled out, with why) and fixes never decided
    (suggested only: never presented as applied)."""
    sections: list[Section] = []
    ruled_out = [
        _decided(f, "ruled out") + (f": {f.reject_reason}" if f.reject_reason else "")
        for f in ctx.ruled_out()
    ]
    if ruled_out:
        sections.append(("Tried / ruled out", ruled_out))
    suggested = [
        f"{f.title} — suggested{f' on {f.proposed_at}' if f.proposed_at else ''}, not applied"
        for f in ctx.open_proposals()
    ]
    if suggested:
        sections.append(("Suggested, not applied", suggested))
    return sections


def _timeline(ctx: SessionContext) -> list[Section]:
    if not ctx.timeline:
        return []
    lines = [f"{event.at} — {event.text}" for event in ctx.timeline]
    return [(f"Timeline ({ctx.time_zone})", lines)]


# --- scripts ---------------------------------------------------------------

# Order matters: paths before DOMAIN\user (a path looks like one), hosts last.
_FINDERS: list[tuple[str, re.Pattern[str], str]] = [
    (
        "ip_address",
        re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
        "IP address",
    ),
    ("unc_path", re.compile(r"\\\\[\w.-]+\\[^\s'\"]+"), "Network path"),
    ("windows_path", re.compile(r"\b[A-Za-z]:\\[^\s'\"]+"), "Path"),
    ("unix_path", re.compile(r"(?<![\w:/])/(?:etc|var|opt|home|srv|usr|tmp|mnt)/[^\s'\"]+"), "Path"),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "E-mail address"),
    ("user_name", re.compile(r"\b[A-Za-z][\w-]{1,30}\\[A-Za-z][\w.-]{1,60}\b"), "Account (DOMAIN\\user)"),
    (
        "host_name",
        re.compile(
            r"\b(?=[a-z0-9-]*[a-z])[a-z0-9-]{2,63}(?:\.[a-z0-9-]{2,63})+\.(?:com|net|org|local|lan|corp|internal|io|co|uk|de|nl|au)\b",
            re.I,
        ),
        "Host name",
    ),
]
_QUOTED = re.compile(r"(?P<q>[\"'])(?P<v>[^\"'\n{}$]{3,120})(?P=q)")
_ASSIGNED = re.compile(r"(?i)(?:\$|\b)(?P<var>[A-Za-z_][A-Za-z0-9_]{1,40})\s*=\s*$")


def templatize(script: ScriptDraft) -> Templatized:
    """Finds literals worth parameterising and replaces them by ``{{name}}``."""
    body = script.body
    parameters: dict[str, Parameter] = {}
    seen: dict[str, str] = {}

    def claim(value: str, base: str, description: str) -> str:
        if value in seen:
            return seen[value]
        name, n = base, 2
        while name in parameters:
            name, n = f"{base}_{n}", n + 1
        parameters[name] = Parameter(name=name, description=description, required=True, default=value)
        seen[value] = name
        return name

    for base, pattern, description in _FINDERS:

        def placeholder(match: re.Match[str], base: str = base, description: str = description) -> str:
            return "{{" + claim(match.group(0), base, description) + "}}"

        body = pattern.sub(placeholder, body)

    def quoted(match: re.Match[str]) -> str:
        value = match.group("v")
        if "{{" in value:
            return match.group(0)
        prefix = body_so_far(match)
        assigned = _ASSIGNED.search(prefix)
        base = _snake(assigned.group("var")) if assigned else "value"
        return (
            match.group("q") + "{{" + claim(value, base, f"Literal {value[:40]!r}") + "}}" + match.group("q")
        )

    def body_so_far(match: re.Match[str]) -> str:
        line_start = match.string.rfind("\n", 0, match.start()) + 1
        return match.string[line_start : match.start()]

    body = _QUOTED.sub(quoted, body)
    name = script.name_hint.strip() or _name_from(script.body, script.language)
    return Templatized(
        name=name[:200],
        description=f"{script.language or 'script'} template with {len(parameters)} parameter(s), found offline.",
        body=body,
        parameters=list(parameters.values())[:50],
        model=MODEL,
    )


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().strip("_") or "value"


def _name_from(body: str, language: str) -> str:
    for line in body.splitlines():
        words = re.findall(r"[A-Za-z][A-Za-z-]+", line)
        if words and not line.lstrip().startswith(("#", "//", "REM", "::")):
            return " ".join(words[:4])
    return f"{language or 'script'} template"


# --- decision trees ---------------------------------------------------------

_PATTERNS: list[tuple[tuple[str, ...], list[tuple[str, str]]]] = [
    (
        ("password", "login", "log in", "sign in", "locked", "mfa"),
        [
            (
                "Is the account locked out or the password expired?",
                "Unlock the account or reset the password, then have the user sign in.",
            ),
            ("Does sign-in fail with an MFA prompt error?", "Re-register the user's MFA method and retry."),
        ],
    ),
    (
        ("printer", "print", "spooler"),
        [
            (
                "Is the print spooler service running on the affected machine?",
                "Restart the print spooler and clear stuck jobs.",
            ),
            ("Can other users print to the same printer?", "Reinstall the printer driver for this user."),
        ],
    ),
    (
        ("vpn", "network", "internet", "wifi", "dns", "connect"),
        [
            ("Does the device have a valid IP address and gateway?", "Renew the DHCP lease and flush DNS."),
            (
                "Can the device resolve and reach a known external host?",
                "Correct the DNS servers or proxy settings.",
            ),
        ],
    ),
    (
        ("email", "outlook", "mailbox", "exchange"),
        [
            ("Does webmail work for the user?", "Rebuild the Outlook profile."),
            ("Is the mailbox over its quota?", "Archive or expand the mailbox."),
        ],
    ),
]
_GENERIC = [
    (
        "Can the problem be reproduced now?",
        "Restart the affected application or service and confirm with the user.",
    ),
    (
        "Did anything change recently (updates, policies, credentials)?",
        "Roll back or correct the recent change.",
    ),
]


def decision_tree(problem: str) -> DecisionTree:
    lowered = problem.lower()
    checks = next((steps for words, steps in _PATTERNS if any(w in lowered for w in words)), _GENERIC)
    nodes: list[TreeNode] = []
    for index, (question, remedy) in enumerate(checks):
        next_question = f"q{index + 2}" if index + 1 < len(checks) else "escalate"
        nodes.append(
            TreeNode(
                id=f"q{index + 1}",
                kind="question",
                text=question,
                options=[
                    TreeOption(label="Yes", next=f"fix{index + 1}"),
                    TreeOption(label="No", next=next_question),
                ],
            )
        )
        nodes.append(TreeNode(id=f"fix{index + 1}", kind="resolution", text=remedy))
    nodes.append(
        TreeNode(
            id="escalate",
            kind="escalation",
            text=f"Escalate to an engineer with the findings: {problem[:300]}",
        )
    )
    return DecisionTree(root="q1", nodes=nodes, model=MODEL)
