"""Calls to other FlowPilot services: channels, forwarded identity, settings.

Synchronous calls forward the caller's own bearer token (never a stored
one); the OpenTelemetry client interceptor carries the W3C trace context, so
one request is one trace across services.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from cachetools import TTLCache
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from google.protobuf import json_format
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from services.core import logs
from services.core.ai import Preferences, Prompt, Prompts
from services.core.auth import current_principal
from services.core.errors import Internal, Unavailable


def channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        interceptors=aio_client_interceptors(),
        options=[("grpc.keepalive_time_ms", 60_000), ("grpc.enable_retries", 1)],
    )


def forwarded() -> tuple[tuple[str, str], ...]:
    """Metadata that forwards the current caller's token (and request id, so
    the other service's access line names the same request)."""
    token = ("authorization", f"Bearer {current_principal().token}")
    request_id = logs.current_request_id()
    return (token, ("x-request-id", request_id)) if request_id else (token,)


log = logging.getLogger("flowpilot.clients")


class PromptReader:
    """Reads the caller's account's prompts (``ListPrompts``, one call: there
    are a dozen) from the settings service with the caller's token, with a
    short per-account cache like :class:`SettingsReader`'s. Never fails an AI
    task: when the settings service cannot answer, the built-in texts are
    used (an empty :class:`Prompts`, not cached, so the next task asks again)
    and the failure is logged once until a read succeeds again. Call it
    outside any database transaction."""

    def __init__(
        self,
        stub: settings_pb2_grpc.SettingsServiceAsyncStub,
        *,
        ttl_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        timeout_seconds: float = 3.0,
    ) -> None:
        self._stub = stub
        self._timeout = timeout_seconds
        self._cache: TTLCache[uuid.UUID, Prompts] = TTLCache(10_000, ttl=ttl_seconds, timer=clock)
        self._failing = False

    async def prompts(self) -> Prompts:
        principal = current_principal()
        cached = self._cache.get(principal.account_id)
        if cached is not None:
            return cached
        try:
            response = await self._stub.ListPrompts(
                settings_pb2.ListPromptsRequest(page_size=1000), metadata=forwarded(), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            if not self._failing:
                self._failing = True
                log.warning(
                    "reading prompts failed; using the built-in prompts",
                    extra={"fields": {"code": exc.code().name}},
                )
            return Prompts()
        self._failing = False
        prompts = Prompts(
            {
                p.name.removeprefix("prompts/"): Prompt(text=p.text, version=p.version)
                for p in response.prompts
            }
        )
        self._cache[principal.account_id] = prompts
        return prompts


class SettingsReader:
    """Reads the caller's account settings from the settings service, with a
    short per-account cache (settings change rarely; a stale read lasts at most
    ``ttl_seconds``)."""

    def __init__(
        self,
        stub: settings_pb2_grpc.SettingsServiceAsyncStub,
        *,
        ttl_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        timeout_seconds: float = 3.0,
    ) -> None:
        self._stub = stub
        self._timeout = timeout_seconds
        # Bounded: the least recently used account goes first past 10,000.
        self._cache: TTLCache[uuid.UUID, dict[str, Any]] = TTLCache(10_000, ttl=ttl_seconds, timer=clock)
        # The account's prompts come with its preferences, from the same service.
        self.prompts = PromptReader(
            stub, ttl_seconds=ttl_seconds, clock=clock, timeout_seconds=timeout_seconds
        )

    async def values(self) -> dict[str, Any]:
        principal = current_principal()
        cached = self._cache.get(principal.account_id)
        if cached is not None:
            return cached
        try:
            response = await self._stub.ListSettings(
                settings_pb2.ListSettingsRequest(page_size=1000), metadata=forwarded(), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            # CANCELLED here is the other side's doing (our own cancellation
            # raises CancelledError): a service going away mid-call.
            if exc.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
            ):
                raise Unavailable("the settings service is unavailable; retry later") from exc
            raise Internal(f"reading settings failed: {exc.code().name}") from exc
        values = {
            s.name.removeprefix("settings/"): json_format.MessageToDict(s.value) for s in response.settings
        }
        self._cache[principal.account_id] = values
        return values

    async def flag(self, key: str) -> bool:
        return bool(await self._value(key))

    async def number(self, key: str) -> int:
        return int(await self._value(key))

    async def choice(self, key: str) -> str:
        return str(await self._value(key))

    async def _value(self, key: str) -> Any:
        """The account's value of ``key``: the settings service answers every
        key of its catalogue, with the catalogue's default when the account
        never set it (so no default is written twice)."""
        values = await self.values()
        if key not in values:
            raise Internal(f"the settings service has no setting {key!r}")
        return values[key]

    async def preferences(self) -> Preferences:
        return Preferences(
            redact=await self.flag("notes.redact_sensitive"),
            tier=await self.choice("ai.model_tier"),
            fmt=await self.choice("notes.format"),
            prompts=await self.prompts.prompts(),
        )


def settings_reader(address: str, *, ttl_seconds: float) -> tuple[SettingsReader, grpc.aio.Channel]:
    """A settings reader on its own channel (close the channel on shutdown)."""
    settings_channel = channel(address)
    return SettingsReader(
        settings_pb2_grpc.SettingsServiceStub(settings_channel), ttl_seconds=ttl_seconds
    ), settings_channel
