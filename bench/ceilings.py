"""The framework ceilings: an empty ``grpc.aio`` unary handler and an empty
ASGI handler, served on the same machine as the suite.

``python -m bench.ceilings grpc PORT`` / ``python -m bench.ceilings asgi PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

EMPTY_METHOD = "/bench.Empty/Call"


async def _grpc(port: int) -> None:
    import grpc

    async def call(request: bytes, context: Any) -> bytes:
        return b""

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Empty",
        {
            "Call": grpc.unary_unary_rpc_method_handler(
                call, request_deserializer=None, response_serializer=None
            )
        },
    )
    server.add_generic_rpc_handlers([handler])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "grpc":
        asyncio.run(_grpc(port))
    else:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
