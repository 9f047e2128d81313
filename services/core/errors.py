"""The one exception tree of the suite, and its mapping to gRPC rich status.

Domain code raises these; the runtime (services.core.rpc) is the only place that turns
them into ``google.rpc.Status`` (with ``ErrorInfo``; for invalid input,
``BadRequest`` field violations; for a limit with a known wait, ``RetryInfo``).
Anything else that escapes a handler becomes INTERNAL with a generic message;
its detail goes to the log only.

    FlowPilotError
    ├── InvalidArgument      INVALID_ARGUMENT   (field violations)
    ├── NotFound             NOT_FOUND          (also: another tenant's resource)
    ├── AlreadyExists        ALREADY_EXISTS
    ├── FailedPrecondition   FAILED_PRECONDITION
    ├── Aborted              ABORTED            (stale etag, lost race)
    ├── Unauthenticated      UNAUTHENTICATED
    ├── PermissionDenied     PERMISSION_DENIED
    ├── ResourceExhausted    RESOURCE_EXHAUSTED (a limit; RetryInfo when the wait is known)
    ├── Unavailable          UNAVAILABLE        (a dependency is down)
    ├── DeadlineExceeded     DEADLINE_EXCEEDED  (the service's own limit on a call)
    └── Internal             INTERNAL           (detail never sent)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field: ``field`` is a dotted path such as ``setting.value``."""

    field: str
    description: str


class FlowPilotError(Exception):
    """Base of every error a handler may raise on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    default_reason: str = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})


# An error names at most this many fields (a request can break a rule in
# every element); its message, the first few.
MAX_FIELD_VIOLATIONS = 100
_IN_MESSAGE = 10


class InvalidArgument(FlowPilotError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        violations: Sequence[FieldViolation] | FieldViolation,
        message: str | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        every = [violations] if isinstance(violations, FieldViolation) else list(violations)
        self.violations = every[:MAX_FIELD_VIOLATIONS]
        if message is None:
            message = "; ".join(f"{v.field}: {v.description}" for v in every[:_IN_MESSAGE])
            if len(every) > _IN_MESSAGE:
                message += f"; and {len(every) - _IN_MESSAGE} more"
        super().__init__(message, reason=reason)


class NotFound(FlowPilotError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(FlowPilotError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(FlowPilotError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(FlowPilotError):
    code = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"


class Unauthenticated(FlowPilotError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(FlowPilotError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class ResourceExhausted(FlowPilotError):
    """``retry_delay``: seconds until a retry can succeed, sent as ``RetryInfo``."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_delay = retry_delay


class Unavailable(FlowPilotError):
    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class DeadlineExceeded(FlowPilotError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class Internal(FlowPilotError):
    code = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"


def not_found(kind: str, name: str) -> NotFound:
    """The one NOT_FOUND of the suite: a missing resource and another tenant's
    resource produce exactly this, so existence never leaks."""
    return NotFound(f"{kind} {name!r} not found", metadata={"resource": name})


def found(row: T | None, kind: str, name: str) -> T:
    """``row``, or the NOT_FOUND of ``not_found`` when there is none."""
    if row is None:
        raise not_found(kind, name)
    return row


def to_grpc_status(error: FlowPilotError, *, domain: str) -> grpc.Status:
    """Rich status for ``error``: message, ErrorInfo, BadRequest and RetryInfo details."""
    details: list[any_pb2.Any] = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=domain, metadata=error.metadata))
    details.append(info)
    if isinstance(error, InvalidArgument) and error.violations:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in error.violations
                ]
            )
        )
        details.append(bad)
    if isinstance(error, ResourceExhausted) and error.retry_delay is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(max(0, round(error.retry_delay * 1e9)))
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    status = status_pb2.Status(
        code=getattr(code_pb2, error.code.name), message=error.message, details=details
    )
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def internal_status(*, domain: str, trace_id: str | None) -> grpc.Status:
    """What the caller sees for an unexpected failure: no detail, a trace id."""
    suffix = f" (trace {trace_id})" if trace_id else ""
    error = Internal(f"internal error{suffix}", metadata={"trace_id": trace_id} if trace_id else None)
    return to_grpc_status(error, domain=domain)
