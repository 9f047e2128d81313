"""Runs the gateway on a real socket (uvicorn) inside the test's event loop,
and an echo server for the conformance service."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
import uvicorn
from conformance.v1 import messaging_pb2
from google.protobuf import descriptor, json_format, struct_pb2
from google.protobuf.empty_pb2 import Empty

from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.http import PROTOCOL
from services.core.metadata import CREATED_METADATA

MESSAGING = messaging_pb2.DESCRIPTOR.services_by_name["Messaging"]


@asynccontextmanager
async def serve_gateway(
    *,
    backends: dict[str, str],
    services: Sequence[descriptor.ServiceDescriptor] | None = None,
    traced: bool | None = None,
    protocol: type[asyncio.Protocol] = PROTOCOL,
    **config: Any,
) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(
        GatewayConfig(host="127.0.0.1", port=port, **config),
        services=services,
        backends=backends,
        traced=traced,
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", http=protocol))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for this)
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def _echo_handler(method: descriptor.MethodDescriptor) -> grpc.RpcMethodHandler[Any, Any]:

    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        name = getattr(request, "name", "")
        if name == "messages/slow":
            await asyncio.sleep(2)
        if name == "messages/missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "message 'messages/missing' not found")
        if method.output_type.full_name == "google.protobuf.Empty":
            return Empty()
        if method.name == "CreateMessage" and request.message.text != "replayed":
            # As the services' runtime does when a call created a resource.
            context.set_trailing_metadata(((CREATED_METADATA, "messages/new-1"),))
        body = struct_pb2.Struct()
        body.update(json_format.MessageToDict(request, preserving_proto_field_name=True))
        metadata = dict(context.invocation_metadata() or ())
        text = name or str(metadata.get("x-request-id", ""))
        if name == "messages/trace":  # report the trace context that reached the service
            text = str(metadata.get("traceparent", ""))
        if name == "messages/headers":  # report what reached the service, and answer with metadata
            await context.send_initial_metadata((("x-served-by", "echo"), ("x-internal-host", "10.0.0.7")))
            text = json.dumps(
                {
                    k: v
                    for k, v in metadata.items()
                    if isinstance(v, str) and not k.startswith(("grpc-", "user-agent", "traceparent"))
                }
            )
        return messaging_pb2.Echo(method=method.name, request=body, text=text)

    from google.protobuf import message_factory

    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=request_class.FromString,
        response_serializer=response_class.SerializeToString,
    )


@asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    server = grpc.aio.server()
    handlers = {m.name: _echo_handler(m) for m in MESSAGING.methods}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(MESSAGING.full_name, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)
