"""The account's monthly AI token budget (``ai.monthly_token_budget``; 0 is
unlimited) and the usage counted against it.

- **What counts.** Every model call whose tokens are known: each copilot
  reply adds its input and output tokens (as the model counted them; the
  offline copilot's estimate) and one call to the account's month, in the
  transaction that stores the reply. Fix suggestions and notes do not count
  and are never refused: their backends do not report tokens yet, and a
  spent budget must not keep an engineer from closing a ticket with its note.
- **When it is refused.** Before a copilot model call, when the month's
  tokens reach the budget: RESOURCE_EXHAUSTED ``AI_TOKEN_BUDGET_SPENT`` with
  the reset time (the first of next month, UTC) in the error's metadata and
  RetryInfo. Replies already in flight when the budget runs out are stored
  and counted, so a month can end a few replies over its budget.
- **Months** are calendar months in UTC, named ``aiUsage/YYYY-MM``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime

from services.core.clients import SettingsReader
from services.core.db import Database
from services.core.errors import FieldViolation, InvalidArgument, ResourceExhausted
from services.sessions import copilot_storage
from services.sessions.rows import AiUsage

BUDGET_SETTING = "ai.monthly_token_budget"
USAGE = "aiUsage/{month}"
FIRST_YEAR, LAST_YEAR = 2000, 9998
_MONTH = re.compile(r"^aiUsage/(?P<year>[0-9]{4})-(?P<month>0[1-9]|1[0-2])$")


def month_of(at: datetime) -> date:
    """The first day of ``at``'s month, in UTC."""
    at = at.astimezone(UTC)
    return date(at.year, at.month, 1)


def month_start(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def reset_time(month: date) -> datetime:
    """When ``month``'s budget starts afresh: the first of the next month, 00:00 UTC."""
    year, number = (month.year + 1, 1) if month.month == 12 else (month.year, month.month + 1)
    return datetime(year, number, 1, tzinfo=UTC)


def usage_name(month: date) -> str:
    return f"aiUsage/{month:%Y-%m}"


def parse_month(name: str, now: datetime) -> date:
    """The month of ``aiUsage/YYYY-MM`` (or ``aiUsage/current``); INVALID_ARGUMENT on ``name``."""
    if name == "aiUsage/current":
        return month_of(now)
    matched = _MONTH.match(name)
    if matched is None:
        raise InvalidArgument(FieldViolation("name", "must be `aiUsage/YYYY-MM` or `aiUsage/current`"))
    year = int(matched["year"])
    if not FIRST_YEAR <= year <= LAST_YEAR:  # year 0 and 9999's reset time do not exist
        raise InvalidArgument(FieldViolation("name", f"the year must be {FIRST_YEAR} to {LAST_YEAR}"))
    return date(year, int(matched["month"]), 1)


def require_budget(used: AiUsage, budget: int, now: datetime) -> None:
    """RESOURCE_EXHAUSTED once the month's tokens reach a budget (0: unlimited)."""
    if budget <= 0 or used.total_tokens < budget:
        return
    resets = reset_time(used.month)
    raise ResourceExhausted(
        f"this account's AI token budget for {used.month:%Y-%m} is spent "
        f"({used.total_tokens:,} of {budget:,} tokens); it resets at {resets:%Y-%m-%dT%H:%M:%SZ}, "
        f"or a team admin can raise {BUDGET_SETTING}",
        reason="AI_TOKEN_BUDGET_SPENT",
        metadata={
            "reset_time": resets.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "used_tokens": str(used.total_tokens),
            "budget_tokens": str(budget),
        },
        retry_delay=max(1.0, (resets - now).total_seconds()),
    )


class Usage:
    def __init__(self, db: Database, settings: SettingsReader, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock

    async def budget(self) -> int:
        return await self._settings.number(BUDGET_SETTING)

    async def get(self, account: uuid.UUID, name: str) -> tuple[AiUsage, int]:
        """(the account's usage in the month ``name``, the budget now)."""
        month = parse_month(name, self._clock())
        budget = await self.budget()
        async with self._db.transaction(account) as conn:
            return await copilot_storage.month_usage(conn, month), budget
