"""Identity: bearer-token verification, the caller's principal, roles.

Identity is owned upstream; this suite only verifies tokens (PyJWT: signature,
``exp``, ``iss``, ``aud``) and reads three claims: ``sub`` (user id),
``account_id`` and ``role``. The verified principal of the current RPC is kept
in a context variable set by the runtime (services.core.rpc); handlers read it with
:func:`current_principal`. The account always comes from here, never from a
request field.
"""

from __future__ import annotations

import contextvars
import enum
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from cachetools import TLRUCache

from services.core.errors import PermissionDenied, Unauthenticated
from services.core.ids import canonical_uuid


class Role(enum.IntEnum):
    """Roles in privilege order; values match ``flowpilot.api.v1.Role``."""

    VIEWER = 1
    ENGINEER = 2
    TEAM_ADMIN = 3
    SUPER_ADMIN = 4
    SERVICE = 5

    @property
    def claim(self) -> str:
        return self.name.lower()

    @classmethod
    def from_claim(cls, value: object) -> Role:
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                pass
        raise Unauthenticated("token role claim is not a known role")


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller of the current RPC."""

    user_id: uuid.UUID
    account_id: uuid.UUID
    role: Role
    # The bearer token as received, forwarded on synchronous calls to other
    # services. Never logged, never stored.
    token: str
    # For a service token: the name of the service that signed it.
    service: str | None = None
    # The person's display name (the token's optional ``name`` claim, at most
    # ``MAX_DISPLAY_NAME`` characters, control characters removed); empty when
    # the token has none. Stored beside the user id wherever one is recorded.
    display_name: str = ""

    def label(self) -> str:
        """How a note or a chip names this person: the display name, else the id."""
        return self.display_name or str(self.user_id)

    def require(self, minimum: Role) -> None:
        """Raises PERMISSION_DENIED unless this principal may act at ``minimum``.

        User roles are ordered; the service role is accepted only where it is
        the minimum (internal methods), and never satisfies a user role.
        """
        if minimum is Role.SERVICE or self.role is Role.SERVICE:
            allowed = self.role is minimum
        else:
            allowed = self.role >= minimum
        if not allowed:
            raise PermissionDenied(f"requires role {minimum.claim} or higher")


_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("flowpilot_principal")


def current_principal() -> Principal:
    """The principal of the RPC being served; only valid inside a handler."""
    try:
        return _principal.get()
    except LookupError:
        raise RuntimeError("no principal: called outside an authenticated RPC") from None


def bind_principal(principal: Principal) -> contextvars.Token[Principal]:
    return _principal.set(principal)


def unbind_principal(token: contextvars.Token[Principal]) -> None:
    _principal.reset(token)


SERVICE_ISSUER_PREFIX = "flowpilot-service:"


def service_issuer(service: str) -> str:
    return f"{SERVICE_ISSUER_PREFIX}{service}"


def service_user_id(service: str) -> uuid.UUID:
    """The stable ``sub`` of a service's own tokens."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"flowpilot://services/{service}")


class TokenVerifier:
    """Verifies bearer tokens: user tokens against the identity issuer's public
    key, service tokens against the public key of the service that signed them.

    Only a service issuer may grant the ``service`` role, and a service issuer
    may grant nothing else, so neither kind of key can forge the other kind.
    Every token must carry ``iat`` and live at most ``max_lifetime_seconds``
    (``exp - iat``): a leaked token cannot be made to last for ever.
    """

    def __init__(
        self,
        *,
        public_key: str,
        issuer: str,
        audience: str,
        algorithm: str = "EdDSA",
        leeway_seconds: float = 30.0,
        max_lifetime_seconds: float = 24 * 3600,
        service_keys: dict[str, str] | None = None,
        cache_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: the time tokens expire by (the cache's and ``exp``'s)."""
        self._clock = clock
        self._user_issuer = issuer
        self._keys = {issuer: public_key}
        self._services = {service_issuer(service): service for service in service_keys or {}}
        for service, key in (service_keys or {}).items():
            self._keys[service_issuer(service)] = key
        self._audience = audience
        self._algorithms = [algorithm]
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds
        # Verified tokens until they expire, at most ``cache_entries`` of them
        # (least recently used go first).
        self._cache: TLRUCache[str, tuple[Principal, float]] = TLRUCache(
            maxsize=cache_entries,
            ttu=lambda _token, entry, _now: entry[1] + self._leeway,
            timer=clock,
        )

    def verify(self, token: str) -> Principal:
        """The principal of a valid token. Verified tokens are remembered until
        they expire: a client sends the same token on every call, and the
        signature check is the costliest step of an RPC."""
        cached = self._cache.get(token)
        if cached is not None:
            return cached[0]
        principal, expires = self._verify(token)
        self._cache[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            issuer = unverified.get("iss")
            key = self._keys.get(issuer) if isinstance(issuer, str) else None
            if key is None:
                raise Unauthenticated("token issuer is not trusted")
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=issuer,
                leeway=self._leeway,
                # ``exp`` is checked below, by the verifier's clock (as the cache is).
                options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated("token is not valid") from exc
        expires, issued = claims["exp"], claims["iat"]
        if not _number(expires) or not _number(issued) or expires - issued > self._max_lifetime:
            raise Unauthenticated(f"token lifetime (exp - iat) exceeds {int(self._max_lifetime)} seconds")
        if expires + self._leeway <= self._clock():
            raise Unauthenticated("token expired")
        user_id = canonical_uuid(claims["sub"])
        account_id = canonical_uuid(claims.get("account_id"))
        if user_id is None or account_id is None:
            raise Unauthenticated("token sub and account_id must be lower-case hyphenated UUIDs")
        role = Role.from_claim(claims.get("role"))
        if (role is Role.SERVICE) != (issuer != self._user_issuer):
            raise Unauthenticated("token role does not match its issuer")
        principal = Principal(
            user_id=user_id,
            account_id=account_id,
            role=role,
            token=token,
            service=self._services.get(str(issuer)),
            display_name=display_name(claims.get("name")),
        )
        return principal, float(expires)

    def verify_header(self, value: str | None) -> Principal:
        if not value:
            raise Unauthenticated("missing bearer token")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization must be 'Bearer <token>'")
        return self.verify(token.strip())


MAX_DISPLAY_NAME = 200
_CONTROL = dict.fromkeys(c for c in range(0x20)) | {0x7F: None}


def display_name(claim: object) -> str:
    """The ``name`` claim as a display name: a string, control characters
    dropped, whitespace trimmed, at most ``MAX_DISPLAY_NAME`` characters;
    anything else (absent, not a string) is no name. A name is only shown,
    never trusted, so a bad one does not refuse the token."""
    if not isinstance(claim, str):
        return ""
    return " ".join(claim.translate(_CONTROL).split())[:MAX_DISPLAY_NAME]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def mint_token(
    *,
    private_key: str,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    role: Role,
    issuer: str,
    audience: str,
    ttl_seconds: int = 3600,
    algorithm: str = "EdDSA",
    now: float | None = None,
    name: str | None = None,
) -> str:
    """Signs a token (dev tooling, tests, and service tokens); ``name``: the
    person's display name claim."""
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": str(user_id),
        "account_id": str(account_id),
        "role": role.claim,
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    if name is not None:
        claims["name"] = name
    return jwt.encode(claims, private_key, algorithm=algorithm)


def generate_keypair() -> tuple[str, str]:
    """A new Ed25519 key pair as (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


class ServiceCredential:
    """A service's own signing key: short-lived tokens for one account, for
    work done without a caller (outbox delivery, sweeps). Never a user's token."""

    def __init__(self, *, service: str, private_key: str, audience: str, ttl_seconds: int = 60) -> None:
        self.service = service
        self._key = private_key
        self._audience = audience
        self._ttl = ttl_seconds

    def token_for(self, account_id: uuid.UUID) -> str:
        return mint_token(
            private_key=self._key,
            user_id=service_user_id(self.service),
            account_id=account_id,
            role=Role.SERVICE,
            issuer=service_issuer(self.service),
            audience=self._audience,
            ttl_seconds=self._ttl,
        )

    def principal_for(self, account_id: uuid.UUID) -> Principal:
        return Principal(
            user_id=service_user_id(self.service),
            account_id=account_id,
            role=Role.SERVICE,
            token=self.token_for(account_id),
            service=self.service,
        )
