"""gRPC metadata keys the services and the gateway share (a module of its
own: the gateway imports it without the services' runtime)."""

from __future__ import annotations

# The caller's request id (the gateway's X-Request-Id): logged, forwarded.
REQUEST_ID_METADATA = "x-request-id"

# Trailing metadata naming the resource a call created (the gateway answers
# 201 with its URL); a get-or-create that found one, or a replayed request id,
# sends none.
CREATED_METADATA = "flowpilot-created"
