"""Token verification details: the verified-token cache never outlives a token."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from services.core.auth import Role, TokenVerifier
from services.core.errors import Unauthenticated
from tests.support import AUDIENCE, ISSUER, Keys


def test_cached_tokens_still_expire(keys: Keys) -> None:
    now = [time.time()]
    verifier = TokenVerifier(
        public_key=keys.public_pem, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=0, clock=lambda: now[0]
    )
    token = keys.token(account_id=uuid.uuid4(), role=Role.VIEWER, ttl_seconds=60)
    first = verifier.verify(token)
    assert verifier.verify(token) is first  # the second call is served from the cache
    now[0] += 61
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)


def _sign(keys: Keys, **claims: object) -> str:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": str(uuid.uuid4()),
        "account_id": str(uuid.uuid4()),
        "role": "viewer",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, keys.private_pem, algorithm="EdDSA")


def test_token_lifetime_is_bounded_and_iat_required(keys: Keys) -> None:
    verifier = TokenVerifier(
        public_key=keys.public_pem, issuer=ISSUER, audience=AUDIENCE, max_lifetime_seconds=24 * 3600
    )
    now = int(time.time())
    assert verifier.verify(_sign(keys, exp=now + 24 * 3600 - 5))  # a day is fine (dev tokens: 12 h)
    refused = {
        "exp 10^30": _sign(keys, exp=10**30),
        "a day and a minute": _sign(keys, exp=now + 24 * 3600 + 60),
        "no iat": _sign(keys, iat=None),
        "iat not a number": _sign(keys, iat="yesterday"),
        "iat in the future": _sign(keys, iat=now + 3600, exp=now + 7200),
    }
    for label, token in refused.items():
        with pytest.raises(Unauthenticated):
            verifier.verify(token)
        assert token not in verifier._cache, label


def test_claims_must_be_canonical_uuids(keys: Keys) -> None:
    verifier = TokenVerifier(public_key=keys.public_pem, issuer=ISSUER, audience=AUDIENCE)
    account = uuid.uuid4()
    assert verifier.verify(_sign(keys, account_id=str(account))).account_id == account
    for alias in ["{" + str(account) + "}", "urn:uuid:" + str(account), account.hex, str(account).upper()]:
        for claim in ("sub", "account_id"):
            with pytest.raises(Unauthenticated, match="UUID"):
                verifier.verify(_sign(keys, **{claim: alias}))


def test_the_verified_token_cache_is_bounded(keys: Keys) -> None:
    verifier = TokenVerifier(public_key=keys.public_pem, issuer=ISSUER, audience=AUDIENCE, cache_entries=8)
    tokens = [_sign(keys) for _ in range(20)]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._cache) == 8
    assert tokens[-1] in verifier._cache and tokens[0] not in verifier._cache


def test_service_tokens_name_the_service_that_signed_them(keys: Keys) -> None:
    sessions = Keys.generate()
    verifier = TokenVerifier(
        public_key=keys.public_pem,
        issuer=ISSUER,
        audience=AUDIENCE,
        service_keys={"sessions": sessions.public_pem},
    )
    token = sessions.token(account_id=uuid.uuid4(), role=Role.SERVICE, issuer="flowpilot-service:sessions")
    principal = verifier.verify(token)
    assert principal.role is Role.SERVICE and principal.service == "sessions"
    assert verifier.verify(keys.token(account_id=uuid.uuid4())).service is None
