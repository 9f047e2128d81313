"""Identity: bearer-token verification, the caller's principal, roles.

Identity is owned upstream; this suite only verifies tokens (PyJWT: signature,
``exp``, ``iss``, ``aud``) and reads three claims: ``sub`` (user id),
``account_id`` and ``role``. The verified principal of the current RPC is kept
in a context variable set by the runtime interceptor; handlers read it with
:func:`current_principal`. The account always comes from here, never from a
request field.
"""

from __future__ import annotations

import contextvars
import enum
import time
import uuid
from dataclasses import dataclass

import jwt

from services.core.errors import PermissionDenied, Unauthenticated


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
    """

    def __init__(
        self,
        *,
        public_key: str,
        issuer: str,
        audience: str,
        algorithm: str = "EdDSA",
        leeway_seconds: float = 30.0,
        service_keys: dict[str, str] | None = None,
    ) -> None:
        self._user_issuer = issuer
        self._keys = {issuer: public_key}
        for service, key in (service_keys or {}).items():
            self._keys[service_issuer(service)] = key
        self._audience = audience
        self._algorithms = [algorithm]
        self._leeway = leeway_seconds
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._cache_size = 10_000

    def verify(self, token: str) -> Principal:
        """The principal of a valid token. Verified tokens are remembered until
        they expire (a bounded cache): a client sends the same token on every
        call, and the signature check is the costliest step of an RPC."""
        cached = self._cache.get(token)
        if cached is not None:
            principal, expires = cached
            if time.time() < expires + self._leeway:
                return principal
            del self._cache[token]
        principal, expires = self._verify(token)
        if len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))  # the oldest entry
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
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("token is not valid") from exc
        try:
            user_id = uuid.UUID(str(claims["sub"]))
            account_id = uuid.UUID(str(claims["account_id"]))
        except (KeyError, ValueError) as exc:
            raise Unauthenticated("token sub and account_id must be UUIDs") from exc
        role = Role.from_claim(claims.get("role"))
        if (role is Role.SERVICE) != (issuer != self._user_issuer):
            raise Unauthenticated("token role does not match its issuer")
        return Principal(user_id=user_id, account_id=account_id, role=role, token=token), float(claims["exp"])

    def verify_header(self, value: str | None) -> Principal:
        if not value:
            raise Unauthenticated("missing bearer token")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization must be 'Bearer <token>'")
        return self.verify(token.strip())


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
) -> str:
    """Signs a token (dev tooling, tests, and service tokens)."""
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
        )
