"""Request ids (AIP-155): a retry with the same ``request_id`` replays the
first call's result only for the same caller sending the same request.

A fingerprint (SHA-256 of the caller and the request without its request
id) is stored with what the first call created; a later call with that
request id and another fingerprint is ALREADY_EXISTS, reason
``REQUEST_ID_REUSED``, and learns nothing about what the id was used for.
"""

from __future__ import annotations

import hashlib

from google.protobuf.message import Message

from services.core.auth import Principal
from services.core.errors import AlreadyExists


def fingerprint(caller: Principal, request: Message) -> str:
    unkeyed = type(request)()
    unkeyed.CopyFrom(request)
    if "request_id" in unkeyed.DESCRIPTOR.fields_by_name:
        unkeyed.ClearField("request_id")
    digest = hashlib.sha256()
    digest.update(f"{caller.account_id}/{caller.user_id}/".encode())
    digest.update(unkeyed.SerializeToString(deterministic=True))
    return digest.hexdigest()


def check_replay(stored: str | None, given: str) -> None:
    """Raises unless ``given`` is the fingerprint stored with the request id.
    A request id recorded before fingerprints were (NULL) replays as before."""
    if stored is not None and stored != given:
        raise AlreadyExists(
            "request_id was already used by another caller or for another request",
            reason="REQUEST_ID_REUSED",
        )
