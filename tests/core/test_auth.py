"""Token verification details: the verified-token cache never outlives a token."""

from __future__ import annotations

import time
import uuid

import pytest

from services.core.auth import Role, TokenVerifier
from services.core.errors import Unauthenticated
from tests.support import AUDIENCE, ISSUER, Keys


def test_cached_tokens_still_expire(keys: Keys) -> None:
    verifier = TokenVerifier(public_key=keys.public_pem, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=0)
    token = keys.token(account_id=uuid.uuid4(), role=Role.VIEWER, ttl_seconds=1)
    first = verifier.verify(token)
    assert verifier.verify(token) is first  # the second call is served from the cache
    time.sleep(1.1)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)
