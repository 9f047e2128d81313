"""The route table: every HttpRule binding of the served services, compiled
once at start and checked (bad templates, field paths that do not exist,
conflicting bindings stop the gateway from starting)."""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flowpilot.api.v1 import access_pb2
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, message_factory

from gateway.template import Template, TemplateError, parse

HTTP_KINDS = ("get", "put", "post", "delete", "patch")


class RouteError(ValueError):
    """The protos' HTTP annotations cannot be served as written."""


@dataclass(frozen=True)
class Route:
    http_method: str
    template: Template
    body: str  # "" (none), "*" (whole request) or a top-level field name
    response_body: str
    service: str
    method: descriptor.MethodDescriptor
    input_class: Any = field(compare=False)
    output_class: Any = field(compare=False)

    @functools.cached_property
    def rpc_path(self) -> str:
        return f"/{self.service}/{self.method.name}"

    @functools.cached_property
    def streams(self) -> bool:
        """A server-streaming method: answered message by message (``gateway.streaming``)."""
        return bool(self.method.server_streaming)

    @functools.cached_property
    def empty_response(self) -> bool:
        """Answered 204: the response is Empty and nothing of it is returned."""
        return self.method.output_type.full_name == "google.protobuf.Empty" and not self.response_body

    @property
    def may_create(self) -> bool:
        """A POST that can create a resource (Create…, and get-or-create Start…):
        201 with ``Location`` when the service says it created one, else 200."""
        return self.http_method == "POST" and self.method.name.startswith(("Create", "Start"))

    @property
    def resource_prefix(self) -> str | None:
        """For ``GET /v1/{name=…}``: the literal path before the name (``/v1/``),
        which with a resource name is that resource's URL; else None."""
        parts = self.template.parts
        if (
            self.http_method != "GET"
            or self.template.verb is not None
            or self.template.variables != ("name",)
        ):
            return None
        literals = [p for p in parts if p.variable is None]
        if any(p.kind != "literal" for p in literals) or parts[: len(literals)] != tuple(literals):
            return None
        return "/" + "".join(p.text + "/" for p in literals)

    @property
    def specificity(self) -> tuple[int, int]:
        literals = sum(1 for p in self.template.parts if p.kind == "literal")
        return (literals, -sum(1 for p in self.template.parts if p.kind == "**"))


def discover_services(package: str = "flowpilot") -> list[descriptor.ServiceDescriptor]:
    """Every service in the generated ``package`` (all FlowPilot APIs)."""
    root = importlib.import_module(package)
    services: list[descriptor.ServiceDescriptor] = []
    for module in pkgutil.walk_packages(root.__path__, f"{package}."):
        if module.name.endswith("_pb2"):
            services += list(importlib.import_module(module.name).DESCRIPTOR.services_by_name.values())
    return services


def field_at(message: descriptor.Descriptor, path: str) -> descriptor.FieldDescriptor:
    """The field at a dotted path; RouteError when any step does not exist."""
    current: descriptor.Descriptor | None = message
    found: descriptor.FieldDescriptor | None = None
    for step in path.split("."):
        if current is None:
            raise RouteError(f"{message.full_name}: {path!r} goes through a non-message field")
        found = current.fields_by_name.get(step)
        if found is None:
            raise RouteError(f"{message.full_name} has no field {path!r}")
        if found.is_repeated and step != path.split(".")[-1]:
            raise RouteError(f"{message.full_name}: {path!r} goes through a repeated field")
        current = found.message_type
    assert found is not None
    return found


def _bindings(rule: http_pb2.HttpRule) -> Iterable[http_pb2.HttpRule]:
    yield rule
    for extra in rule.additional_bindings:
        if extra.additional_bindings:
            raise RouteError("additional_bindings must not nest")
        yield extra


def _route(
    service: descriptor.ServiceDescriptor, method: descriptor.MethodDescriptor, rule: http_pb2.HttpRule
) -> Route:
    kind = rule.WhichOneof("pattern")
    if kind in HTTP_KINDS:
        http_method, path = kind.upper(), getattr(rule, kind)
    elif kind == "custom":
        http_method, path = rule.custom.kind.upper(), rule.custom.path
    else:
        raise RouteError(f"{method.full_name}: HttpRule without a pattern")
    try:
        template = parse(path)
    except TemplateError as exc:
        raise RouteError(f"{method.full_name}: {exc}") from exc
    where = method.full_name
    for variable in template.variables:
        bound = field_at(method.input_type, variable)
        if bound.is_repeated or bound.message_type is not None:
            raise RouteError(f"{where}: path variable {variable!r} must be a singular scalar field")
    if rule.body and rule.body != "*" and rule.body not in method.input_type.fields_by_name:
        raise RouteError(f"{where}: body field {rule.body!r} does not exist")
    if rule.body and rule.body in template.variables:
        raise RouteError(f"{where}: body field {rule.body!r} is also bound by the path")
    if rule.response_body and rule.response_body not in method.output_type.fields_by_name:
        raise RouteError(f"{where}: response_body field {rule.response_body!r} does not exist")
    return Route(
        http_method=http_method,
        template=template,
        body=rule.body,
        response_body=rule.response_body,
        service=service.full_name,
        method=method,
        input_class=message_factory.GetMessageClass(method.input_type),
        output_class=message_factory.GetMessageClass(method.output_type),
    )


def compile_routes(services: Iterable[descriptor.ServiceDescriptor]) -> list[Route]:
    routes: list[Route] = []
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            if method.client_streaming:
                raise RouteError(f"{method.full_name}: client streaming methods are not transcoded")
            if options.Extensions[access_pb2.minimum_role] == access_pb2.ROLE_SERVICE:
                raise RouteError(f"{method.full_name}: internal methods are never served over HTTP")
            for rule in _bindings(options.Extensions[annotations_pb2.http]):
                routes.append(_route(service, method, rule))
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], Route] = {}
    for route in routes:
        key = (route.http_method, route.template.shape())
        if key in seen:
            other = seen[key]
            raise RouteError(
                f"conflicting bindings: {route.http_method} {route.template.source} ({route.method.full_name}) "
                f"and {other.template.source} ({other.method.full_name})"
            )
        seen[key] = route
    routes.sort(key=lambda r: r.specificity, reverse=True)
    return routes
