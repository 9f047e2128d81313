"""A limited model call through HTTP: 429, ``Retry-After`` and the Status body."""

from __future__ import annotations

import math
import uuid

import grpc
import httpx
from flowpilot.sessions.v1 import sessions_pb2 as pb

from services.core.ai import AI
from services.core.ai.offline import OfflineBackend
from services.core.ratelimit import TokenBuckets
from tests.gateway.harness import serve_gateway
from tests.sessions.helpers import Caller, sessions_with
from tests.support import Keys, RunDatabase

SESSIONS = pb.DESCRIPTOR.services_by_name["SessionsService"]


async def test_a_limited_model_call_is_429_with_retry_after(
    database: RunDatabase,
    keys: Keys,
    service_keys: dict[str, Keys],
    settings_address: str,
    library_address: str,
) -> None:
    # One call, then one every 90 s: the wait is 89.x s on a real clock.
    ai = AI(OfflineBackend(), limiter=TokenBuckets(per_minute=60 / 90, burst=1))
    async with (
        sessions_with(
            ai,
            database=database,
            keys=keys,
            service_keys=service_keys,
            settings_address=settings_address,
            library_address=library_address,
        ) as address,
        grpc.aio.insecure_channel(address) as channel,
        serve_gateway(backends={"flowpilot.sessions.v1": address}, services=[SESSIONS]) as url,
        httpx.AsyncClient(base_url=url, timeout=20) as client,
    ):
        me = Caller(channel, keys, account=uuid.uuid4())
        session = await me.session()
        auth = {"Authorization": f"Bearer {keys.token(account_id=me.account, user_id=me.user)}"}
        path = f"/v1/{session.name}/fixes:suggest"

        assert (await client.post(path, json={}, headers=auth)).status_code == 200
        refused = await client.post(path, json={}, headers=auth)

    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    details = {d["@type"].rsplit(".", 1)[1]: d for d in body["details"]}
    assert details["ErrorInfo"]["reason"] == "AI_RATE_LIMITED"
    delay = float(details["RetryInfo"]["retryDelay"].removesuffix("s"))
    assert 80 < delay <= 90
    assert refused.headers["Retry-After"] == str(math.ceil(delay))
    assert details["ErrorInfo"]["metadata"]["retry_after_seconds"] == refused.headers["Retry-After"]
