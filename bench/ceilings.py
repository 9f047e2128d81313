"""The framework ceilings: an empty ``grpc.aio`` unary handler and an empty
ASGI handler, served on the same machine as the suite; and the floor of a
get-session RPC: a ``grpc.aio`` handler that runs only the tenant read
(one call of ``sessions.read_session``, which sets the tenant and reads in its
own transaction) through raw asyncpg — no auth, no validation, no message
built — to show what any Python gRPC service doing this read under the
design's tenancy rule can reach on the machine.

``python -m bench.ceilings grpc PORT`` / ``python -m bench.ceilings asgi PORT`` /
``python -m bench.ceilings grpc-sql PORT DSN ACCOUNT`` (request: a session id).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

EMPTY_METHOD = "/bench.Empty/Call"


async def _grpc(port: int, dsn: str | None = None, account: str = "") -> None:
    import grpc

    async def empty(request: bytes, context: Any) -> bytes:
        return b""

    call = empty
    if dsn:
        import uuid

        import asyncpg

        from bench.load import nothing_to_reset

        # Connections only while measured: the server's slots are shared with the suite.
        pool = await asyncpg.create_pool(
            dsn, min_size=0, max_size=16, max_inactive_connection_lifetime=2, reset=nothing_to_reset
        )
        tenant = uuid.UUID(account)

        async def get_session(request: bytes, context: Any) -> bytes:
            async with pool.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT * FROM sessions.read_session($1, $2)", tenant, uuid.UUID(request.decode())
                )
            return b"" if row is None else b"1"

        call = get_session

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
    elif kind == "grpc-sql":
        asyncio.run(_grpc(port, sys.argv[3], sys.argv[4]))
    else:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
