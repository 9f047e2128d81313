"""HTTP errors of the gateway: gRPC status → HTTP status, and the JSON body
(``google.rpc.Status`` with its typed details decoded), for backend errors
and for the gateway's own."""

from __future__ import annotations

import json
import re
from typing import Any

import grpc
from google.protobuf import any_pb2, descriptor, json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "gateway.flowpilot.internal"

HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


_TRANSPORT_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "the service is unavailable; retry later",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the service did not answer in time",
    grpc.StatusCode.CANCELLED: "the request was cancelled",
    grpc.StatusCode.UNIMPLEMENTED: "the service does not implement this method",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "the service is overloaded or the message too large",
}


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(code, 500)


class HttpError(Exception):
    """An error the gateway answers itself, before or instead of a backend call."""

    def __init__(
        self,
        http: int,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str,
        violations: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.http = http
        self.status = _status(code, message, reason=reason, violations=violations)
        self.headers = headers or {}


def transport_error(code: grpc.StatusCode) -> HttpError:
    """The gateway's own answer for a call that failed in transport (no backend status)."""
    return HttpError(http_status(code), code, _TRANSPORT_MESSAGES.get(code, code.name), reason=code.name)


def internal_error(trace_id: str | None) -> HttpError:
    """An unexpected failure inside the gateway: no detail, a trace id (the detail is logged)."""
    suffix = f" (trace {trace_id})" if trace_id else ""
    return HttpError(500, grpc.StatusCode.INTERNAL, f"internal error{suffix}", reason="INTERNAL")


def bad_request(message: str, *, field: str | None = None, reason: str = "INVALID_REQUEST") -> HttpError:
    violations = [(field, message)] if field else None
    return HttpError(400, grpc.StatusCode.INVALID_ARGUMENT, message, reason=reason, violations=violations)


def _status(
    code: grpc.StatusCode, message: str, *, reason: str, violations: list[tuple[str, str]] | None = None
) -> status_pb2.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN))
    details = [info]
    if violations:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations
                ]
            )
        )
        details.append(bad)
    return status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)


def from_rpc_error(error: grpc.aio.AioRpcError) -> tuple[int, status_pb2.Status]:
    """HTTP status and the rich status a backend sent (or one made from its code)."""
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        status = None
    if status is None:
        # Not from a FlowPilot service (a transport failure): say what it means,
        # not the transport's own text, which names internal addresses.
        message = _TRANSPORT_MESSAGES.get(error.code()) or error.details() or error.code().name
        status = _status(error.code(), message, reason=error.code().name)
    return http_status(error.code()), status


def retry_after_headers(status: status_pb2.Status) -> dict[str, str]:
    """``Retry-After`` (whole seconds, rounded up) when the backend said how long
    to wait (a ``google.rpc.RetryInfo`` detail); otherwise nothing."""
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay = info.retry_delay
            seconds = delay.seconds + (1 if delay.nanos > 0 else 0)
            return {"Retry-After": str(max(0, seconds))}
    return {}


def status_json(status: status_pb2.Status) -> bytes:
    body: dict[str, Any] = json_format.MessageToDict(status, preserving_proto_field_name=False)
    body.setdefault("code", 0)
    body.setdefault("message", "")
    body.setdefault("details", [])
    return json.dumps(body).encode()


_STEP = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[[^\]]*\])*)$")


def json_field_paths(status: status_pb2.Status, request: descriptor.Descriptor) -> status_pb2.Status:
    """``status`` with its field violations named as the JSON the client sent
    (lowerCamelCase, ``session.ticketRef``, ``facts[0].text``) rather than the
    proto paths the services use; a path that is no field is kept as it is."""
    changed = False
    details = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for violation in bad.field_violations:
                renamed = _json_path(violation.field, request)
                if renamed != violation.field:
                    violation.field = renamed
                    changed = True
            packed = any_pb2.Any()
            packed.Pack(bad)
            details.append(packed)
        else:
            details.append(detail)
    if not changed:
        return status
    return status_pb2.Status(code=status.code, message=status.message, details=details)


def _json_path(path: str, message: descriptor.Descriptor | None) -> str:
    steps = []
    for step in path.split("."):
        match = _STEP.match(step)
        field = message.fields_by_name.get(match.group(1)) if match and message is not None else None
        if match is None or field is None:
            return path
        steps.append(field.json_name + match.group(2))
        message = field.message_type
    return ".".join(steps)
