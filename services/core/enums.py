"""Proto enums ↔ the names the database stores, one map per enum."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from flowpilot.api.v1 import tickets_pb2

from services.core.errors import FieldViolation, InvalidArgument

V = TypeVar("V", bound=int)  # a generated enum's value type


class EnumMap(Generic[V]):
    """A two-way map between stored names and a proto enum's numbers.

    ``enum``: the generated enum type (for the names in errors); ``stored``:
    stored name → number, for every value but UNSPECIFIED."""

    def __init__(self, enum: Any, stored: Mapping[str, V], *, field: str) -> None:
        self.field = field
        self._to_proto = dict(stored)
        self._to_db = {int(number): name for name, number in stored.items()}
        self._allowed = ", ".join(enum.Name(number) for number in stored.values())

    def db(self, value: int, *, field: str | None = None) -> str:
        """The stored name of ``value``; INVALID_ARGUMENT naming the field and
        the values allowed when it has none (UNSPECIFIED, unknown numbers)."""
        try:
            return self._to_db[value]
        except KeyError:
            raise InvalidArgument(
                FieldViolation(field or self.field, f"must be one of {self._allowed}")
            ) from None

    def optional(self, value: int, *, field: str | None = None) -> str | None:
        """As ``db``, with UNSPECIFIED (0) meaning "not given": a filter."""
        return self.db(value, field=field) if value else None

    def proto(self, name: str) -> V:
        return self._to_proto[name]


# Where a ticket lives: one enum for sessions and walks (flowpilot.api.v1).
TICKET_KIND: EnumMap[tickets_pb2.TicketKind.ValueType] = EnumMap(
    tickets_pb2.TicketKind,
    {"psa": tickets_pb2.TICKET_KIND_PSA, "internal": tickets_pb2.TICKET_KIND_INTERNAL},
    field="ticket_kind",
)
